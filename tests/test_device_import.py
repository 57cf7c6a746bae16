import subprocess
import sys


def test_every_device_module_imports_without_tensorflow_or_simulators():
    """Walks every subpackage (walk_packages, not iter_modules: a module three levels down
    counts too) and imports it in a fresh interpreter."""
    code = (
        "import sys, importlib, pkgutil\n"
        "import vitaledge.device\n"
        "names = [m.name for m in pkgutil.walk_packages(vitaledge.device.__path__,\n"
        "                                               'vitaledge.device.')\n"
        "         if not m.name.endswith('.__main__')]  # running it is not importing it\n"
        "for n in names:\n"
        "    importlib.import_module(n)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in "
        "('tensorflow', 'tf_keras', 'keras', 'tensorflow_model_optimization')\n"
        "             or k.startswith(('vitaledge.train', 'vitaledge.convert',\n"
        "                              'vitaledge.firmware_sim')))\n"
        "print(len(names), ','.join(n for n in names if n.count('.') >= 3))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")
    counted, bad = out.stdout.strip().splitlines()
    n_modules, nested = counted.split(" ", 1)
    assert int(n_modules) >= 45
    assert "vitaledge.device.stream.daemon" in nested.split(",")
    assert "vitaledge.device.dsp.rpeaks" in nested.split(",")
    assert bad == "[]", f"device imported TensorFlow or another stage: {bad}"
