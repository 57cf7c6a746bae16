"""The streaming side of the daemon: the wire protocol, sources, sinks, the local API, the
stages (beat pipeline and emotion stages) and the daemon that joins them. Import the module
you need (``vitaledge.device.stream.daemon`` etc.): this package imports nothing itself."""

