"""What an artifact is, in words (``vitaledge device info ARTIFACT``): task, tensors with
shapes, dtypes and quantization, labels, output kind, the metrics measured at conversion,
the model file's sha256 and whether it matches, and the signature's status."""

from __future__ import annotations

import json
from pathlib import Path

from vitaledge.device.model.manifest import (
    Manifest,
    ManifestError,
    TensorSpec,
    input_key,
    load_manifest,
    manifest_path,
    not_tflite,
    verify_model_file,
)
from vitaledge.device.model.selftest import check_vectors_file

#: ``file_check`` of a model file with the manifest's size and sha256; the start of an
#: invalid signature's status.
MATCHES, INVALID = "matches the manifest", "INVALID"
#: The start of ``file_check`` for a file that matches its manifest but is no TFLite model.
NOT_A_MODEL = "NOT A MODEL"


def _tensor(t: TensorSpec) -> str:
    zp = t.quantization.zero_point if t.quantization else 0
    q = (f", quantized: real = {t.quantization.scale:.6g} x (q {'+' if zp < 0 else '-'} "
         f"{abs(zp)})" if t.quantization else "")
    return f"{input_key(t.name)}: {t.dtype} {'x'.join(map(str, t.shape))}{q}"


def signature_status(artifact: str | Path, public_key: str | Path | None = None) -> str:
    """``unsigned``, ``signed by key K (not checked: ...)``, ``valid (key K)`` or
    ``INVALID: why``."""
    from vitaledge.device.model.signing import (
        SIG_FILE,
        SignatureError,
        load_public_key,
        verify_artifact,
    )

    if public_key is not None:
        load_public_key(public_key)  # a key that is no key is named, signed or not
    sig = manifest_path(artifact).with_name(SIG_FILE)
    if not sig.exists():
        return "unsigned (no manifest.sig)"
    try:
        kid = json.loads(sig.read_text()).get("key_id", "?")
    except (OSError, ValueError, AttributeError):
        return f"INVALID: {sig} is not a signature file"
    if public_key is None:
        return f"signed by key {kid} (not checked: give --key PUBLIC_KEY)"
    try:
        verify_artifact(artifact, public_key)
    except SignatureError as exc:
        return f"{INVALID}: {exc}"
    return f"valid (key {kid})"


def artifact_info(artifact: str | Path, public_key: str | Path | None = None) -> dict:
    """The manifest's facts plus the model file check and the signature status; a missing
    or invalid manifest raises :class:`ManifestError`."""
    m, model_path = load_manifest(artifact, verify_file=False)
    try:
        why = not_tflite(model_path, verify_model_file(m, model_path))
        file_check = f"{NOT_A_MODEL}: matches the manifest, but {why}" if why else MATCHES
    except ManifestError as exc:
        file_check = f"MISMATCH: {exc}"
    try:
        check_vectors_file(model_path.parent, m)
        vectors_check = MATCHES
    except ManifestError as exc:
        vectors_check = f"MISMATCH: {exc}"
    return {"artifact": str(artifact), "manifest": m, "model_file": str(model_path),
            "file_check": file_check, "vectors_check": vectors_check,
            "signature": signature_status(artifact, public_key)}


def _signal(m: Manifest) -> str:
    d = m.signal.to_dict()
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict | list)}
    window = d.get("window") if isinstance(d.get("window"), dict) else {}
    parts = [f"{k} {v}" for k, v in scalars.items()]
    if window:
        parts.append(f"windows of {window.get('length')} samples at {window.get('fs')} Hz "
                     f"({window.get('convention', '')})".replace(" ()", ""))
    return ", ".join(parts)


def format_info(info: dict) -> str:
    m: Manifest = info["manifest"]
    metrics = {k: v for k, v in m.metrics.items() if isinstance(v, int | float)}
    lines = [f"{info['artifact']}: {m.task} model for {m.target}, {m.quantization} "
             f"quantization" + (f", pruned {m.pruning}" if m.pruning else ""),
             *[f"input  {_tensor(t)}" for t in m.inputs],
             f"output {_tensor(m.output)} ({m.output_kind})",
             f"labels {', '.join(m.labels)}",
             f"signal {_signal(m)}",
             "metrics at conversion: " + (", ".join(
                 f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                 for k, v in metrics.items()) or "none recorded"),
             f"sha256 {m.sha256} ({m.size_bytes:,} bytes; file {info['file_check']})",
             f"signature {info['signature']}",
             "self-test " + (f"{m.selftest.vectors} vectors in {m.selftest.file} (tolerance "
                             f"{m.selftest.atol:g}; file {info['vectors_check']})"
                             if m.selftest else
                             "none (no over-the-air deployment without vectors)"),
             f"made {m.created} by vitaledge {m.vitaledge_version} from "
             f"{m.source_run.get('arch', '?')} run {m.source_run.get('path', '?')}"]
    return "\n".join(lines)
