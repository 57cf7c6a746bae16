"""Architecture contracts (pyproject ``[tool.importlinter]``), checked with import-linter.

The stages live in top-level folders that setuptools maps into one ``vitaledge`` namespace,
so the checked tree is laid out as it is installed (a copy of the sources, by the mapping
``setup.py`` uses) and ``lint-imports`` runs on that."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = {"vitaledge": "vitaledge", "vitaledge/train": "train", "vitaledge/convert": "convert",
          "vitaledge/device": "device", "vitaledge/firmware_sim": "firmware_sim"}


def installed_layout(dest: Path) -> Path:
    for target, folder in STAGES.items():
        shutil.copytree(REPO / folder, dest / target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", dest / "pyproject.toml")
    return dest


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(exe), "--no-cache", str(tree / "pyproject.toml")],
                          cwd=tree, env=env, capture_output=True, text=True)


def test_import_contracts_hold(tmp_path):
    out = lint_imports(installed_layout(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_a_device_module_importing_training_breaks_a_contract(tmp_path):
    """The check can fail: one forbidden import in device is reported."""
    tree = installed_layout(tmp_path)
    bad = tree / "vitaledge/device/dsp/filters.py"
    bad.write_text(bad.read_text() + "\nimport vitaledge.train.fit  # noqa\n")
    out = lint_imports(tree)
    assert out.returncode != 0
    assert "vitaledge.device.dsp.filters -> vitaledge.train.fit" in out.stdout
