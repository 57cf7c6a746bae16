"""The daemon's local HTTP API: ``/health``, ``/metrics`` (Prometheus text), ``/events``.

Read-only, no request reaches the filesystem, and it binds to 127.0.0.1 unless configured
otherwise. ``/events?since=SEQ[&limit=N]`` returns the retained events with ``seq > SEQ``.

Hardening (issue 8): a bind address that is not loopback needs a bearer token (compared in
constant time) or the server refuses to start; with a token set every request must carry
``Authorization: Bearer TOKEN``. Only GET without a body is served; request lines longer
than :data:`MAX_URL` get 414; each client address gets ``rate`` requests per second
(burst ``2 * rate``) and then 429; at most :data:`MAX_CLIENTS` connections are served at
once (503 beyond), and an idle connection is closed after :data:`IDLE_TIMEOUT_S`.

Slow clients (issue 13): a request must be complete (request line and headers) within
:data:`REQUEST_TIMEOUT_S` of the moment it is awaited, however slowly its bytes trickle
in, or the connection is closed; and when every slot is taken, a new connection evicts
the one that has waited longest (at least :data:`EVICT_AFTER_S`) for its headers, so
clients dribbling bytes cannot keep ``/health`` from answering. Tokens follow
:func:`~.auth.check_token`.
"""

from __future__ import annotations

import hmac
import io
import json
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from vitaledge.device.stream.auth import address_family, bind_host, check_token, is_loopback

MAX_URL = 2048
MAX_CLIENTS = 16
IDLE_TIMEOUT_S = 5.0
# Whole-request bound: from the moment a request is awaited to its last header byte,
# however the bytes trickle in (a per-read timeout alone lets a client that sends one
# byte every few seconds hold a slot for ever).
REQUEST_TIMEOUT_S = 5.0
# With every slot taken, a new connection evicts the one that has waited longest for its
# request headers, if that is at least this long: legitimate clients send them at once.
EVICT_AFTER_S = 2.0
_TRACKED_CLIENTS = 1024  # rate-limit buckets kept (least recently seen evicted)


class ApiSecurityError(ValueError):
    """The API configuration is unsafe (a non-loopback bind without a token)."""


class RateLimiter:
    """Token bucket per client address, ``rate`` per second, burst ``burst``; bounded
    memory (the least recently seen client's bucket is forgotten first)."""

    def __init__(self, rate: float, burst: float | None = None):
        self.rate, self.burst = float(rate), float(burst or 2 * rate)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Clients whose bucket is remembered now (at most the tracked-client bound)."""
        with self._lock:
            return len(self._buckets)

    def allow(self, client: str, now: float | None = None) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            ok = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if ok else tokens, now)
            while len(self._buckets) > _TRACKED_CLIENTS:
                self._buckets.popitem(last=False)
            return ok


class _DeadlineReader(io.RawIOBase):
    """The socket's bytes, each read bounded by what is left of the handler's request
    deadline (``handler._deadline``; None once the headers are in)."""

    def __init__(self, handler):
        self.h = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        h = self.h
        if h._deadline is not None:
            left = h._deadline - time.monotonic()
            if left <= 0 or h._evicted:
                raise TimeoutError("request not complete in time")
            h.connection.settimeout(min(left, IDLE_TIMEOUT_S))
        n = h.connection.recv_into(buf)
        if h._evicted:  # shut down under us to free the slot
            raise TimeoutError("evicted while waiting for the request")
        return n


def api_bind_error(host: str, port: int, exc: OSError) -> str:
    """One line on why the API could not listen on ``host:port``."""
    import errno

    where = f"API port {port} on {host}"
    if exc.errno == errno.EADDRINUSE:
        return (f"{where} is already in use (another daemon or program listens there): "
                "choose another api_port / --api-port, or 0 for no API")
    if exc.errno == errno.EACCES:
        return f"{where}: permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return f"{where}: no such local address (api_host / --api-host)"
    return f"{where}: cannot listen: {exc.strerror or exc}"


def make_server(host: str, port: int, health: Callable[[], dict],
                metrics: Callable[[], bytes],
                events: Callable[[int, int], list[dict]], token: str = "",
                rate: float = 20.0) -> ThreadingHTTPServer:
    """The API server (not yet serving). Refuses a non-loopback ``host`` without ``token``."""
    if not is_loopback(host) and not token:
        raise ApiSecurityError(f"API bind address {host!r} is not loopback: set a bearer "
                               "token (api_token_file or VITALEDGE_API_TOKEN) or bind "
                               "127.0.0.1")
    if token:
        check_token(token, "API bearer token")
    expected = f"Bearer {token}".encode() if token else b""
    limiter = RateLimiter(rate)
    slots = threading.BoundedSemaphore(MAX_CLIENTS)
    waiting: dict = {}  # handler -> when it began waiting for its current request
    waiting_lock = threading.Lock()

    def evict_slowest() -> bool:
        """Shut down the connection longest in wait for its request headers (at least
        EVICT_AFTER_S); True if there was one."""
        now = time.monotonic()
        with waiting_lock:
            old = [(t, h) for h, t in waiting.items() if now - t >= EVICT_AFTER_S]
            if not old:
                return False
            victim = min(old, key=lambda th: th[0])[1]
            del waiting[victim]
            victim._evicted = True
        try:
            victim.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True

    class Handler(BaseHTTPRequestHandler):
        server_version = "vitaledge"
        sys_version = ""
        timeout = IDLE_TIMEOUT_S  # slow or idle clients do not hold a thread
        _deadline: float | None = None
        _evicted = False

        def log_message(self, *args):  # requests are not worth a log line each
            return

        def setup(self):
            super().setup()
            self.rfile = io.BufferedReader(_DeadlineReader(self))

        def handle_one_request(self):
            now = time.monotonic()
            self._deadline = now + REQUEST_TIMEOUT_S
            with waiting_lock:
                waiting[self] = now
            try:
                super().handle_one_request()
            finally:
                with waiting_lock:
                    waiting.pop(self, None)

        def parse_request(self) -> bool:
            ok = super().parse_request()  # reads the headers
            self._deadline = None
            with waiting_lock:
                waiting.pop(self, None)
            self.connection.settimeout(IDLE_TIMEOUT_S)  # bounds writing the answer
            return ok

        def handle(self):
            if not slots.acquire(blocking=False) and not (
                    evict_slowest() and slots.acquire(timeout=1.0)):
                self.close_connection = True
                try:
                    self.wfile.write(b"HTTP/1.0 503 Service Unavailable\r\n"
                                     b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                except OSError:
                    pass
                return
            try:
                super().handle()
            except OSError:  # the client went away (or was evicted) mid-answer
                self.close_connection = True
            finally:
                slots.release()

        def _refuse(self) -> bool:
            """Answer and return True when the request must not be served."""
            if len(self.path) > MAX_URL:
                self._json(414, {"error": f"request target longer than {MAX_URL} bytes"})
                return True
            if self.headers.get("Content-Length", "0").strip() not in ("", "0") or \
                    self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                self._json(413, {"error": "request bodies are not accepted"})
                return True
            if not limiter.allow(self.client_address[0]):
                self.close_connection = True
                self._send(429, json.dumps({"error": "rate limit"}).encode(),
                           "application/json", {"Retry-After": "1"})
                return True
            if expected:
                got = self.headers.get("Authorization", "").encode("utf-8", "replace")
                if not hmac.compare_digest(got, expected):
                    self._send(401, json.dumps({"error": "bearer token required"}).encode(),
                               "application/json", {"WWW-Authenticate": "Bearer"})
                    return True
            return False

        def _not_allowed(self) -> None:
            self.close_connection = True
            self._send(405, json.dumps({"error": "read-only API: GET only"}).encode(),
                       "application/json", {"Allow": "GET"})

        do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed

        def _send(self, code: int, body: bytes, ctype: str,
                  headers: dict | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj) -> None:
            self._send(code, json.dumps(obj).encode(), "application/json")

        def do_GET(self):  # noqa: N802 - http.server API
            if self._refuse():
                return
            url = urlparse(self.path)
            if url.path == "/health":
                self._json(200, health())
            elif url.path == "/metrics":
                self._send(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
            elif url.path == "/events":
                q = parse_qs(url.query)
                try:
                    since = int(q.get("since", ["0"])[0])
                    limit = max(0, min(int(q.get("limit", ["1000"])[0]), 10_000))
                except ValueError:
                    self._json(400, {"error": "since and limit must be integers"})
                    return
                self._json(200, {"events": events(since, limit)})
            else:
                self._json(404, {"error": f"no such endpoint {url.path[:80]!r}",
                                 "endpoints": ["/health", "/metrics", "/events?since=SEQ"]})

    server = _Server6 if address_family(host) == socket.AF_INET6 else _Server
    return server((bind_host(host), port), Handler)


class _Server(ThreadingHTTPServer):
    # A burst of connections waits in the kernel's queue instead of having its SYNs
    # dropped (retried after 1 s) behind http.server's default backlog of 5.
    request_queue_size = 64


class _Server6(_Server):
    address_family = socket.AF_INET6


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, name="api", daemon=True)
    t.start()
    return t
