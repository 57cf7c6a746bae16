"""Ed25519 signatures on model manifests: who made this model, and is it unchanged.

What is signed: the bytes ``b"vitaledge-manifest-v1\\n" + canonical(manifest)`` where
``canonical`` is the manifest's JSON object (as stored in ``manifest.json``) re-serialized
with sorted keys, no whitespace (``separators=(",", ":")``), UTF-8, ``ensure_ascii=False``.
The manifest holds the model file's sha256 and size, so the signature covers the model
bytes too; the runtime checks those against the file it hands to the interpreter.

The signature lives beside the manifest in ``manifest.sig`` (it is not part of the
manifest, so nothing has to be removed before verifying): one JSON object
``{"algorithm": "ed25519", "key_id": KEY_ID, "signature": BASE64}`` where ``KEY_ID`` is
the first 16 hex digits of the sha256 of the raw 32-byte public key.

Keys are PEM: private PKCS#8, public SubjectPublicKeyInfo — what ``vitaledge keygen``
writes and what ``openssl genpkey -algorithm ed25519 -out key.pem`` /
``openssl pkey -in key.pem -pubout -out key.pub`` produce.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from vitaledge.device.io.atomic import write_atomic
from vitaledge.device.model.manifest import (
    ManifestError,
    load_manifest,
    manifest_path,
    not_tflite,
    unreadable,
    verify_model_file,
)
from vitaledge.device.model.selftest import check_vectors_file

DOMAIN = b"vitaledge-manifest-v1\n"
SIG_FILE = "manifest.sig"


class SignatureError(ManifestError):
    """A manifest signature is missing, malformed, by another key, or does not verify."""


def canonical_bytes(manifest: Any) -> bytes:
    """The exact bytes signed for a manifest object (a dict as read from manifest.json)."""
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
    return DOMAIN + body.encode("utf-8")


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SignatureError("manifest signatures need the 'cryptography' package "
                             "(pip install 'vitaledge[device]')") from exc
    return serialization, ed25519


def key_id(public_key) -> str:
    """First 16 hex digits of sha256 of the raw public key."""
    serialization, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new Ed25519 key pair (private key mode 0600); return its key id."""
    serialization, ed25519 = _crypto()
    private_path, public_path = Path(private_path), Path(public_path)
    for p in (private_path, public_path):
        if p.exists():
            raise FileExistsError(f"{p}: exists; not overwriting a key")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(key.public_key())


def load_private_key(path: str | Path):
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: cannot read an unencrypted PEM private key: {exc}"
                             ) from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SignatureError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str | Path):
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: cannot read a PEM public key: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SignatureError(f"{path}: not an Ed25519 public key")
    return key


def check_whole(artifact: str | Path) -> None:
    """SignatureError unless ``artifact`` is whole: a valid manifest whose model file (and
    self-test vectors file, when it names one) has the recorded size and sha256 and, for
    ``.tflite``, is a TFLite flatbuffer. A signature
    vouches for the artifact; ``device sign`` refuses a damaged one."""
    try:
        m, model_path = load_manifest(artifact, verify_file=False)
        data = verify_model_file(m, model_path)  # the bytes, read once
        check_vectors_file(model_path.parent, m)  # the signature covers them too
    except ManifestError as exc:
        raise SignatureError(f"not signed: {exc}") from exc
    why = not_tflite(model_path, data)
    if why:
        raise SignatureError(f"not signed: {why}")


def sign_artifact(artifact: str | Path, private_key_path: str | Path) -> Path:
    """Sign ``artifact``'s manifest.json; write ``manifest.sig`` beside it (atomically).
    :func:`check_whole` first, to sign only what a signature should vouch for."""
    mpath = manifest_path(artifact)
    key = load_private_key(private_key_path)
    try:
        raw = json.loads(mpath.read_text())
    except OSError as exc:
        raise SignatureError(unreadable(mpath, exc, "the manifest")) from exc
    except ValueError as exc:
        raise SignatureError(f"{mpath}: cannot read the manifest to sign: {exc}") from exc
    sig = key.sign(canonical_bytes(raw))
    out = mpath.with_name(SIG_FILE)
    if out.is_symlink() or (out.exists() and not out.is_file()):
        raise SignatureError(f"{out}: exists and is not a regular file; not signed")
    try:
        write_atomic(out, json.dumps({"algorithm": "ed25519",
                                      "key_id": key_id(key.public_key()),
                                      "signature": base64.b64encode(sig).decode()}) + "\n")
    except OSError as exc:
        raise SignatureError(f"{out}: cannot write the signature: {exc.strerror or exc}") from exc
    return out


def verify_raw(raw: Any, sig_path: Path, public_key) -> None:
    """Check ``sig_path``'s signature over manifest object ``raw``; raise SignatureError."""
    from cryptography.exceptions import InvalidSignature

    try:
        sig_doc = json.loads(sig_path.read_text())
    except FileNotFoundError as exc:
        raise SignatureError(f"{sig_path}: unsigned model refused (a verify key is "
                             "configured; sign it with `vitaledge convert --sign KEY` or "
                             "`vitaledge device sign ARTIFACT --key KEY`)") from exc
    except (OSError, ValueError) as exc:
        raise SignatureError(f"{sig_path}: unreadable signature file: {exc}") from exc
    if not isinstance(sig_doc, dict) or sig_doc.get("algorithm") != "ed25519" or \
            not isinstance(sig_doc.get("signature"), str):
        raise SignatureError(f"{sig_path}: expected {{\"algorithm\": \"ed25519\", "
                             "\"key_id\": ..., \"signature\": BASE64}")
    want = key_id(public_key)
    if sig_doc.get("key_id") != want:
        raise SignatureError(f"{sig_path}: signed by key {sig_doc.get('key_id')!r}, the "
                             f"configured key is {want}")
    try:
        sig = base64.b64decode(sig_doc["signature"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"{sig_path}: signature is not base64") from exc
    try:
        public_key.verify(sig, canonical_bytes(raw))
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError(f"{sig_path}: signature does not verify: the manifest (or the "
                             "model it names) was changed after signing") from exc


def verify_artifact(artifact: str | Path, public_key_path: str | Path) -> dict:
    """Verify ``artifact``'s manifest signature with the key at ``public_key_path``; return
    the manifest object that was verified (the caller compares it with what it loaded)."""
    mpath = manifest_path(artifact)
    key = load_public_key(public_key_path)
    try:
        raw = json.loads(mpath.read_text())
    except OSError as exc:
        raise SignatureError(unreadable(mpath, exc, "the manifest")) from exc
    except ValueError as exc:
        raise SignatureError(f"{mpath}: cannot read the manifest: {exc}") from exc
    verify_raw(raw, mpath.with_name(SIG_FILE), key)
    return raw
