"""The wheel built from the checkout holds every subpackage: installed with only the
``device`` extra into a fresh virtual environment outside the repository, every
``vitaledge.device`` module imports and ``vitaledge device --help`` runs, without TensorFlow.
(An editable install hides a package the wheel leaves out; this does not.)"""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

WALK = """
import importlib, pkgutil, sys
import vitaledge.device
names = [m.name for m in pkgutil.walk_packages(vitaledge.device.__path__, 'vitaledge.device.')
         if not m.name.endswith('.__main__')]  # running it is not importing it
for n in names:
    importlib.import_module(n)
assert 'tensorflow' not in sys.modules and 'tf_keras' not in sys.modules
print(len(names), vitaledge.device.__file__)
"""


@pytest.mark.slow
def test_wheel_with_device_extra_runs_the_device_without_tensorflow(tmp_path):
    src = tmp_path / "src"  # pip builds in the source tree: build a copy, not the checkout
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", "demo-out", "runs"))
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(dist), str(src)], check=True, cwd=tmp_path)
    (wheel,) = dist.glob("vitaledge-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"{wheel}[device]"], check=True,
                   cwd=tmp_path, env=env)
    out = subprocess.run([str(py), "-c", WALK], capture_output=True, text=True, cwd=tmp_path,
                         env=env)
    assert out.returncode == 0, out.stderr
    n, where = out.stdout.split()
    assert int(n) >= 45
    assert str(env_dir) in where  # the installed copy, not the checkout
    assert not subprocess.run([str(py), "-c", "import tensorflow"], capture_output=True,
                              cwd=tmp_path, env=env).returncode == 0
    cli = subprocess.run([str(env_dir / "bin" / "vitaledge"), "device", "--help"],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert cli.returncode == 0, cli.stderr
    assert "run" in cli.stdout and "score" in cli.stdout
