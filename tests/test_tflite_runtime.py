"""Every artifact also loads and runs with tflite-runtime 2.14 (numpy < 2), the runtime
many Raspberry Pi and Coral images ship, through vitaledge's own device runtime."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

pytestmark = pytest.mark.slow
VENV = REPO / ".venv-tflite-runtime"


@pytest.fixture(scope="module")
def trt_python() -> Path:
    py = VENV / "bin" / "python"
    if not (VENV / ".ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        proc = subprocess.run(pip + ["tflite-runtime==2.14.0", "numpy<2"], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot install tflite-runtime 2.14 from the package index: "
                        f"{proc.stderr.strip().splitlines()[-1:]}")
        subprocess.run(pip + ["--no-deps", "-e", str(REPO)], check=True)
        (VENV / ".ready").write_text("ok\n")
    return py


SCRIPT = """
import json, sys
import numpy as np
import tflite_runtime, numpy
from vitaledge.device.model.runtime import Model
X = np.load(sys.argv[1])
out = {}
for d in sys.argv[2:]:
    m = Model(d, backend="tflite-runtime")
    out[d] = m.predict(X).tolist()
print(json.dumps({"numpy": numpy.__version__, "tflite_runtime": tflite_runtime.__version__,
                  "backend": m.backend.name, "probs": out}))
"""


def test_artifacts_run_under_tflite_runtime_2_14(converted, tiny_run, trt_python, tmp_path):
    from vitaledge.device.model.runtime import Model
    from vitaledge.train.config import BeatTrainConfig
    from vitaledge.train.data import split_parts

    out, results = converted
    dirs = [str(out / v) for v in results if v.startswith(("cpu-", "micro-", "edgetpu-"))]
    _, _, test = split_parts(BeatTrainConfig.load(tiny_run[0] / "config.json"))
    X = test.X[:300]
    np.save(tmp_path / "x.npy", X)
    proc = subprocess.run([str(trt_python), "-c", SCRIPT, str(tmp_path / "x.npy"), *dirs],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["tflite_runtime"] == "2.14.0" and res["numpy"].startswith("1.")
    assert res["backend"] == "tflite-runtime"
    for d in dirs:
        theirs = np.asarray(res["probs"][d])
        ours = Model(d).predict(X)
        # The two runtimes' int8 kernels round requantization differently, so outputs may
        # differ by a few steps of 1/256; float models agree to float rounding.
        step = 1 / 256 if "int8" in d else 1e-5
        diff = np.abs(theirs - ours)
        print(d, "argmax agreement", np.mean(theirs.argmax(1) == ours.argmax(1)),
              "max diff (steps)", diff.max() / step)
        assert np.mean(theirs.argmax(1) == ours.argmax(1)) >= 0.99, d
        assert np.median(diff) <= step + 1e-6, d
        assert diff.max() <= 8 * step + 1e-6, d


def test_a_backend_module_without_an_interpreter_is_named_not_a_traceback(monkeypatch):
    """A module of a backend's name without an Interpreter (as TensorFlow 2.21's tf.lite,
    once a backend) is named in the error, not an AttributeError traceback."""
    from vitaledge.device.model import runtime

    monkeypatch.setattr(runtime.importlib, "import_module", lambda name: json)  # no Interpreter
    with pytest.raises(runtime.ModelLoadError, match=r"^no LiteRT backend available "
                                                     r"\(tflite-runtime: tflite_runtime."
                                                     r"interpreter \S+ has no Interpreter\)"):
        runtime.get_backend("tflite-runtime")


def test_without_litert_the_device_never_tries_tensorflow(monkeypatch):
    """The device never imports TensorFlow: with no LiteRT backend installed, choosing one
    tries ai-edge-litert and tflite-runtime and names them, and never tensorflow.lite (it
    did, as a third backend, loading all of TensorFlow only to find no Interpreter)."""
    from vitaledge.device.model import runtime

    tried = []

    def missing(name):
        tried.append(name)
        raise ImportError(f"No module named {name.split('.')[0]!r}")

    monkeypatch.setattr(runtime.importlib, "import_module", missing)
    with pytest.raises(runtime.ModelLoadError, match=r"^no LiteRT backend available "
                                                     r"\(ai-edge-litert: .*; tflite-runtime: "):
        runtime.get_backend()
    assert tried == ["ai_edge_litert.interpreter", "tflite_runtime.interpreter"]
    with pytest.raises(runtime.ModelLoadError, match="unknown backend 'tf'"):
        runtime.get_backend("tf")
