"""The daemon's local HTTP API: ``/health``, ``/metrics`` (Prometheus text), ``/events``.

Read-only, no request reaches the filesystem, and it binds to 127.0.0.1 unless configured
otherwise. ``/events?since=SEQ[&limit=N]`` returns the retained events with ``seq > SEQ``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


def make_server(host: str, port: int, health: Callable[[], dict],
                metrics: Callable[[], bytes],
                events: Callable[[int, int], list[dict]]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "vitaledge"

        def log_message(self, *args):  # requests are not worth a log line each
            return

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj) -> None:
            self._send(code, json.dumps(obj).encode(), "application/json")

        def do_GET(self):  # noqa: N802 - http.server API
            url = urlparse(self.path)
            if url.path == "/health":
                self._json(200, health())
            elif url.path == "/metrics":
                self._send(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
            elif url.path == "/events":
                q = parse_qs(url.query)
                try:
                    since = int(q.get("since", ["0"])[0])
                    limit = min(int(q.get("limit", ["1000"])[0]), 10_000)
                except ValueError:
                    self._json(400, {"error": "since and limit must be integers"})
                    return
                self._json(200, {"events": events(since, limit)})
            else:
                self._json(404, {"error": f"no such endpoint {url.path!r}",
                                 "endpoints": ["/health", "/metrics", "/events?since=SEQ"]})

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="api", daemon=True)
    t.start()
    return t
