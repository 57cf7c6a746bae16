import subprocess
import sys


def test_device_package_and_cli_import_without_tensorflow():
    code = (
        "import sys, importlib, pkgutil\n"
        "import vitaledge.device, vitaledge.device.cli\n"
        "for m in pkgutil.iter_modules(vitaledge.device.__path__):\n"
        "    importlib.import_module('vitaledge.device.' + m.name)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in "
        "('tensorflow', 'tf_keras', 'keras', 'tensorflow_model_optimization'))\n"
        "print(len(list(pkgutil.iter_modules(vitaledge.device.__path__))), bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")
    n_modules, bad = out.stdout.strip().split(" ", 1)
    assert int(n_modules) >= 8
    assert bad == "[]", f"device imported TensorFlow: {bad}"
