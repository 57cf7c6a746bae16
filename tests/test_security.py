"""API and host security, and Ed25519 manifest signatures (issue 8)."""

from __future__ import annotations

import configparser
import http.client
import json
import re
import shutil
import socket
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import wait_for

from vitaledge.device.model.signing import (
    SIG_FILE,
    SignatureError,
    canonical_bytes,
    generate_keypair,
    sign_artifact,
    verify_artifact,
)
from vitaledge.device.stream import api
from vitaledge.device.stream.api import ApiSecurityError, RateLimiter, is_loopback, make_server

REPO = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token-0123456789"


def _serve(**kw):
    calls = {"n": 0}

    def events(since, limit):
        calls["n"] += 1
        return [{"seq": s} for s in range(since + 1, since + 1 + 50)][:limit]

    srv = make_server(kw.pop("host", "127.0.0.1"), 0, lambda: {"status": "ok"},
                      lambda: b"m 1\n", events, **kw)
    api.serve_in_thread(srv)
    return srv, calls


def _code(srv) -> int | None:
    """The status of a GET /health, or None when the connection broke before the answer."""
    try:
        return _get(srv, "/health")[0]
    except (OSError, http.client.HTTPException):
        return None


def _get(srv, path, headers=None, method="GET", body=None):
    c = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=5)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    out = r.status, r.read(), dict(r.getheaders())
    c.close()
    return out


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "192.168.1.10", "example.com"])
def test_a_non_loopback_bind_without_a_token_is_refused(host):
    assert not is_loopback(host)
    with pytest.raises(ApiSecurityError, match="not loopback"):
        make_server(host, 0, dict, bytes, lambda s, n: [])


def test_daemon_refuses_a_non_loopback_api_without_a_token_before_loading(monkeypatch):
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    monkeypatch.delenv("VITALEDGE_API_TOKEN", raising=False)
    cfg = DaemonConfig(model="/nonexistent", source="stdin", fs=360, api_host="0.0.0.0",
                       api_port=8787)
    with pytest.raises(ApiSecurityError, match="bearer token is required"):
        Daemon(cfg)


def test_token_file_must_hold_a_real_token(tmp_path):
    from vitaledge.device.stream.daemon_config import DaemonConfig, api_token

    f = tmp_path / "tok"
    f.write_text("short\n")
    with pytest.raises(ValueError, match="shorter than 16"):
        api_token(DaemonConfig(api_token_file=str(f)))
    f.write_text(TOKEN + "\n")
    assert api_token(DaemonConfig(api_token_file=str(f))) == TOKEN


def test_loopback_binds_and_serves_without_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    srv, _ = _serve()
    try:
        code, body, _ = _get(srv, "/health")
        assert code == 200 and json.loads(body) == {"status": "ok"}
    finally:
        srv.shutdown()


def _ipv6_loopback() -> bool:
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_the_api_and_a_tcp_source_bind_an_ipv6_address(host):
    """Both bound IPv4 sockets: ::1 failed with 'address family for hostname not
    supported' (a config or flag of an IPv6-only device could not start)."""
    import numpy as np

    from vitaledge.device.stream.sources import open_source

    srv, _ = _serve(host=host)
    try:
        c = http.client.HTTPConnection("::1", srv.server_address[1], timeout=5)
        c.request("GET", "/health")
        assert c.getresponse().status == 200
        c.close()
    finally:
        srv.shutdown()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = open_source(f"tcp:{host}:{port}", fs=360.0)
    try:
        with socket.create_connection(("::1", port), timeout=10) as c:
            c.sendall(b"0.5\n" * 64)
            chunk = next(src.chunks)
    finally:
        src.stop()
    np.testing.assert_array_equal(chunk, np.full(64, 0.5))


def test_bearer_token_is_required_and_compared_exactly():
    srv, calls = _serve(token=TOKEN, rate=0)
    try:
        assert _get(srv, "/events?since=0")[0] == 401
        code, _, headers = _get(srv, "/events", {"Authorization": "Bearer wrong"})
        assert code == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert _get(srv, "/health", {"Authorization": f"Bearer {TOKEN}x"})[0] == 401
        assert _get(srv, "/health", {"Authorization": TOKEN})[0] == 401
        assert calls["n"] == 0  # nothing was served to the unauthenticated requests
        code, body, _ = _get(srv, "/events?since=3&limit=2",
                             {"Authorization": f"Bearer {TOKEN}"})
        assert code == 200 and json.loads(body)["events"] == [{"seq": 4}, {"seq": 5}]
    finally:
        srv.shutdown()
    assert "hmac.compare_digest" in (REPO / "device" / "stream" / "api.py").read_text()


def test_sizes_methods_and_paths_are_limited():
    srv, calls = _serve(rate=0)
    try:
        assert _get(srv, "/events?since=" + "1" * (api.MAX_URL + 10))[0] == 414
        assert _get(srv, "/health", method="POST", body=b"x" * 100)[0] == 405
        assert _get(srv, "/health", method="PUT", body=b"{}")[0] == 405
        assert _get(srv, "/health", {"Content-Length": "5"}, body=b"hello")[0] == 413
        for path in ("/../../../../etc/passwd", "/events/../../etc/passwd",
                     "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd", "/health/../../etc/hosts"):
            code, body, _ = _get(srv, path)
            assert code == 404 and b"root:" not in body and b"localhost" not in body
        code, body, _ = _get(srv, "/events?since=0&limit=-5")
        assert code == 200 and json.loads(body)["events"] == []
        assert _get(srv, "/events?since=abc")[0] == 400
    finally:
        srv.shutdown()


def test_rate_limit_answers_429_then_recovers(monkeypatch):
    # the limiter's clock stands still: no token comes back however slowly the requests go
    monkeypatch.setattr(api, "time", SimpleNamespace(monotonic=lambda: 1000.0))
    srv, _ = _serve(rate=5)  # burst of 10
    try:
        codes = [_get(srv, "/health")[0] for _ in range(30)]
        assert codes == [200] * 10 + [429] * 20, codes
    finally:
        srv.shutdown()
    lim = RateLimiter(rate=2.0)
    assert [lim.allow("a", now=0.0) for _ in range(5)] == [True] * 4 + [False]
    assert lim.allow("b", now=0.0)  # per client
    assert lim.allow("a", now=0.6)  # refilled at 2/s
    for i in range(5000):  # bounded memory whatever the number of clients
        lim.allow(f"10.0.{i // 256}.{i % 256}", now=1.0)
    assert len(lim) <= 1024


def test_connections_beyond_the_limit_get_503(monkeypatch):
    # idle connections are neither evicted nor timed out while this test runs (those are
    # tests/test_security_limits.py's), so a 503 seen late is still the right answer
    for name in ("EVICT_AFTER_S", "REQUEST_TIMEOUT_S", "IDLE_TIMEOUT_S"):
        monkeypatch.setattr(api, name, 120.0)
    srv, _ = _serve(rate=0)
    port = srv.server_address[1]
    idle = []

    def full() -> bool:
        """Every slot held by an idle connection, then a new client turned away. A probe
        whose handler thread took a slot before an idle connection's did (a loaded
        machine) leaves that idle one answered 503 and closed: it is replaced first."""
        for i, s in enumerate(idle):
            s.setblocking(False)
            try:
                s.recv(1, socket.MSG_PEEK)  # answered or closed: it holds no slot
            except BlockingIOError:
                continue  # still waiting for its request: it holds a slot
            finally:
                s.setblocking(True)
            s.close()
            idle[i] = socket.create_connection(("127.0.0.1", port))
        return _code(srv) == 503

    try:
        for _ in range(api.MAX_CLIENTS):  # idle connections hold every slot
            idle.append(socket.create_connection(("127.0.0.1", port)))
        assert wait_for(full, 20), _code(srv)
    finally:
        for s in idle:
            s.close()
    try:  # slots come back when clients leave
        assert wait_for(lambda: _code(srv) == 200, 20), _code(srv)
    finally:
        srv.shutdown()


# ---------------------------------------------------------------- pickle and systemd

_PICKLE = re.compile(r"\b(import\s+(c?pickle|dill|shelve|joblib)|from\s+(c?pickle|dill|shelve|"
                     r"joblib)\s+import|pickle\.loads?\(|allow_pickle\s*=\s*True|"
                     r"yaml\.load\(|torch\.load\()")


def test_no_pickle_outside_the_explicit_trust_pickle_loader():
    hits = []
    for p in REPO.rglob("*.py"):
        rel = p.relative_to(REPO).as_posix()
        if rel.startswith((".venv/", "build/")) or "/site-packages/" in rel or \
                rel == "tests/test_security.py":
            continue
        for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
            m = _PICKLE.search(line)
            # tests may import pickle to write a WESAD-layout fixture, never to load one
            if m and not (rel.startswith("tests/") and m.group(0).startswith("import")):
                hits.append((rel, i, line.strip()))
    assert {h[0] for h in hits} <= {"train/emotion_data.py"}, hits
    src = (REPO / "train" / "emotion_data.py").read_text()
    body = src[src.index("def load_wesad"):]
    body = body[:body.index("\ndef ", 1)]
    # the pickle import sits behind the trust_pickle refusal
    assert body.index("if not trust_pickle") < body.index("import pickle")
    assert all(body.count(h[2]) for h in hits), hits  # every hit is inside load_wesad


def test_systemd_unit_is_unprivileged_and_sandboxed():
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    text = (REPO / "docs" / "vitaledge-device.service").read_text()
    cp.read_string(re.sub(r"^(DeviceAllow|ReadWritePaths)=", r"\1_multi=", text, flags=re.M))
    svc = cp["Service"]
    assert svc["User"] not in ("root", "0") and svc["Group"] not in ("root", "0")
    assert svc["NoNewPrivileges"] == "yes"
    assert svc["ProtectSystem"] == "strict"
    assert svc["PrivateTmp"] == "yes"
    assert "dialout" in svc["SupplementaryGroups"].split()
    assert svc["CapabilityBoundingSet"] == ""
    # the sinks in the example config are under the writable paths
    cfg = tomllib.loads((REPO / "docs" / "device.toml").read_text())
    writable = re.findall(r"^ReadWritePaths=(.+)$", text, flags=re.M)
    writable = [w for line in writable for w in line.split()]
    for sink in cfg["out"]:
        assert any(Path(sink).is_relative_to(w) for w in writable), sink
    assert cfg["api_host"] == "127.0.0.1"


# ---------------------------------------------------------------- signatures


def _fake_artifact(d: Path) -> Path:
    from vitaledge.device.bench.reliability.corpus import manifest_seed

    d.mkdir()
    (d / "manifest.json").write_bytes(manifest_seed())
    return d


def test_sign_and_verify_roundtrip_and_tampering(tmp_path):
    key = tmp_path / "k.pem"
    kid = generate_keypair(key, tmp_path / "k.pem.pub")
    assert len(kid) == 16 and (key.stat().st_mode & 0o777) == 0o600
    with pytest.raises(FileExistsError):
        generate_keypair(key, tmp_path / "other.pub")
    art = _fake_artifact(tmp_path / "art")
    with pytest.raises(SignatureError, match="unsigned model refused"):
        verify_artifact(art, tmp_path / "k.pem.pub")
    sign_artifact(art, key)
    raw = verify_artifact(art, tmp_path / "k.pem.pub")
    assert raw["sha256"] == "0" * 64
    # key order and whitespace are not signed; content is
    (art / "manifest.json").write_text(json.dumps(raw, indent=4, sort_keys=True))
    verify_artifact(art, tmp_path / "k.pem.pub")
    for change in ({"sha256": "1" * 64}, {"labels": ["N", "S", "V", "F", "X"]},
                   {"size_bytes": 11}):
        (art / "manifest.json").write_text(json.dumps({**raw, **change}))
        with pytest.raises(SignatureError, match="does not verify"):
            verify_artifact(art, tmp_path / "k.pem.pub")
    (art / "manifest.json").write_text(json.dumps(raw))
    sig = json.loads((art / SIG_FILE).read_text())
    s = bytearray(__import__("base64").b64decode(sig["signature"]))
    s[5] ^= 1
    (art / SIG_FILE).write_text(json.dumps({**sig, "signature":
                                            __import__("base64").b64encode(s).decode()}))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_artifact(art, tmp_path / "k.pem.pub")
    (art / SIG_FILE).write_text("garbage")
    with pytest.raises(SignatureError, match="unreadable"):
        verify_artifact(art, tmp_path / "k.pem.pub")
    # another key's signature
    generate_keypair(tmp_path / "k2.pem", tmp_path / "k2.pub")
    sign_artifact(art, tmp_path / "k2.pem")
    with pytest.raises(SignatureError, match="signed by key"):
        verify_artifact(art, tmp_path / "k.pem.pub")
    # a directory where the signature goes: named, and no .tmp left (an IsADirectoryError)
    (art / SIG_FILE).unlink()
    (art / SIG_FILE).mkdir()
    with pytest.raises(SignatureError, match="manifest.sig: exists and is not a regular file"):
        sign_artifact(art, key)
    assert not list(art.glob("*.tmp"))


def test_canonical_bytes_are_defined_and_refuse_nan():
    assert canonical_bytes({"b": 1, "a": [1.5, "é"]}) == \
        b'vitaledge-manifest-v1\n{"a":[1.5,"\xc3\xa9"],"b":1}'
    with pytest.raises(ValueError):
        canonical_bytes({"x": float("nan")})


def test_openssl_keys_are_accepted(tmp_path):
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    key, pub = tmp_path / "o.pem", tmp_path / "o.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)],
                   check=True, capture_output=True)
    art = _fake_artifact(tmp_path / "art")
    sign_artifact(art, key)
    verify_artifact(art, pub)


@pytest.mark.slow
def test_model_with_verify_key_loads_only_when_signed(converted, tmp_path):
    from vitaledge.device.model.runtime import Model
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig

    out, _ = converted
    art = tmp_path / "art"
    shutil.copytree(out / "cpu-int8", art)
    generate_keypair(tmp_path / "k.pem", tmp_path / "k.pub")
    with pytest.raises(SignatureError, match="unsigned"):
        Model(art, verify_key=tmp_path / "k.pub")
    sign_artifact(art, tmp_path / "k.pem")
    Model(art, verify_key=tmp_path / "k.pub")
    d = Daemon(DaemonConfig(model=str(art), source="stdin", fs=360, out=[],
                            verify_key=str(tmp_path / "k.pub")))
    old = d.model
    # a model re-hashed into its manifest but not re-signed is refused on reload
    shutil.copy(out / "cpu-fp32" / "model.tflite", art / "model.tflite")
    shutil.copy(out / "cpu-fp32" / "manifest.json", art / "manifest.json")
    assert d.reload() is False and d.model is old
    sign_artifact(art, tmp_path / "k.pem")
    assert d.reload() is True and d.model.manifest.quantization == "none"
