"""A converted model on the device: its manifest (the contract with ``convert``), its
signature, the TensorFlow-free runtime that runs it, and what it costs (the one timing
loop, memory)."""

from vitaledge.device.model.manifest import (  # noqa: F401
    SCHEMA_VERSION,
    Manifest,
    ManifestError,
    Quantization,
    TensorSpec,
    load_manifest,
    manifest_path,
    sha256_file,
    verify_model_file,
)
from vitaledge.device.model.memory import (  # noqa: F401
    peak_rss_mb,
    rss_mb,
)
from vitaledge.device.model.runtime import (  # noqa: F401
    Model,
    ModelLoadError,
    get_backend,
    softmax,
)
from vitaledge.device.model.signing import (  # noqa: F401
    SignatureError,
    generate_keypair,
    sign_artifact,
    verify_artifact,
)
from vitaledge.device.model.timing import (  # noqa: F401
    stats_ms,
    time_calls,
)

