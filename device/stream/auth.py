"""Shared secrets for the daemon's network doors: the API's bearer token and the token a
sensor board sends before its samples on a ``tcp:`` or ``frames+tcp:`` source.

One rule for every token wherever it comes from (a token file or an environment
variable): at least :data:`MIN_TOKEN_CHARS` printable ASCII characters without
whitespace (:func:`check_token`). A listener that is not on loopback needs one.

The source handshake (docs/protocol.md): the client's first line, sent within
:data:`HANDSHAKE_TIMEOUT_S` and at most :data:`MAX_HANDSHAKE_BYTES` long, is
``AUTH <token>\\n``; it is compared in constant time before any byte after it is read.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

MIN_TOKEN_CHARS = 16
HANDSHAKE_TIMEOUT_S = 5.0
MAX_HANDSHAKE_BYTES = 256
AUTH_PREFIX = b"AUTH "


class TokenError(ValueError):
    """A configured token breaks the token rule; the message says where it came from."""


def bind_host(host: str) -> str:
    """A bind address as the socket takes it: ``[::1]`` (an IPv6 literal in brackets, as
    in a URL) is ``::1``."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def address_family(host: str) -> socket.AddressFamily:
    """IPv6 for an IPv6 literal (``::1``, ``::``, ``[::1]``), else IPv4 (names included:
    ``localhost`` binds 127.0.0.1)."""
    return socket.AF_INET6 if ":" in bind_host(host) else socket.AF_INET


def is_loopback(host: str) -> bool:
    """True for a loopback address literal or ``localhost``; any other name counts as
    reachable from the network."""
    host = bind_host(host)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_token(token: str, where: str) -> str:
    """``token`` if it obeys the rule; else :class:`TokenError` naming ``where`` it came
    from (a file, an environment variable) and the minimum."""
    if len(token) < MIN_TOKEN_CHARS:
        raise TokenError(f"{where}: token shorter than {MIN_TOKEN_CHARS} characters "
                         f"({len(token)} given); use a random one, e.g. "
                         "`openssl rand -hex 32`")
    if not (token.isascii() and token.isprintable()) or any(c.isspace() for c in token):
        raise TokenError(f"{where}: a token must be printable ASCII without spaces")
    return token


def load_token(token_file: str, env: str, file_key: str) -> str:
    """The token in ``token_file`` (config key ``file_key``), else in ``$env``, else "";
    either one through :func:`check_token`."""
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise TokenError(f"{file_key} {token_file}: {exc}") from exc
        except UnicodeDecodeError:
            raise TokenError(f"{file_key} {token_file}: not a text file (a token is one "
                             "line of text)") from None
        return check_token(token, f"{file_key} {token_file}")
    token = os.environ.get(env, "").strip()
    return check_token(token, f"${env}") if token else ""


def token_matches(got: bytes, token: str) -> bool:
    """Constant-time comparison of what a client sent with the expected token."""
    return hmac.compare_digest(got, token.encode())


def handshake_line(token: str) -> bytes:
    """What a client sends first on an authenticated source connection."""
    return AUTH_PREFIX + token.encode() + b"\n"


def read_handshake(conn: socket.socket, token: str,
                   stopped: Callable[[], bool] = lambda: False,
                   timeout: float = HANDSHAKE_TIMEOUT_S) -> str | None:
    """Read the client's first line from ``conn`` byte by byte (nothing after it is
    consumed) and check it. None when the client is authenticated, else why not:
    ``no_token`` (the line is not ``AUTH ...``), ``wrong_token``, ``timeout``, ``too_long``
    or ``closed``."""
    line = bytearray()
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        if len(line) > MAX_HANDSHAKE_BYTES:
            return "too_long"
        left = deadline - time.monotonic()
        if left <= 0 or stopped():
            return "timeout"
        conn.settimeout(min(left, 0.2))
        try:
            b = conn.recv(1)
        except TimeoutError:
            continue
        except OSError:
            return "closed"
        if not b:
            return "closed"
        line += b
    if not line.startswith(AUTH_PREFIX):
        return "no_token"
    return None if token_matches(bytes(line[len(AUTH_PREFIX):]).rstrip(b"\r\n"), token) \
        else "wrong_token"
