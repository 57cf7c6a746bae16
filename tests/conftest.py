"""Shared fixtures: where the real recordings are, and small synthetic records."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import NoReturn

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


#: Set by .ci/run. In CI the recordings, Chromium and mosquitto are part of the machine
#: (make test installs the last two), so a test that would skip for want of one fails
#: instead: a skip there would silently drop the only checks of the review page in a
#: browser, of the noise-stress bench on real records and of the MQTT paths.
REQUIRE_ALL = os.environ.get("VITALEDGE_REQUIRE_ALL") == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip the test for want of ``reason``'s prerequisite; fail it under
    ``VITALEDGE_REQUIRE_ALL=1``."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (VITALEDGE_REQUIRE_ALL=1: this machine must have it)",
                    pytrace=False)
    pytest.skip(reason)


def shared_data_dir() -> Path:
    """``$VITALEDGE_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("VITALEDGE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = shared_data_dir()
    if not d.is_dir():
        unavailable(f"real recordings not found at {d} (set VITALEDGE_DATA)")
    return d


@pytest.fixture(scope="session")
def mitdb_dir(data_dir: Path) -> Path:
    d = data_dir / "mitdb"
    if not (d / "100.hea").exists():
        unavailable(f"MIT-BIH records not found in {d}")
    return d


#: The seven records the detector and loader tests were written on; tests name the records
#: they need instead of assuming what the folder holds (it grows).
SEVEN = ("100", "104", "106", "108", "113", "208", "232")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond, seconds: float) -> bool:
    """Poll ``cond`` every 0.1 s until it holds or ``seconds`` pass; its last value (for
    tests that wait for a server or a peer instead of sleeping a fixed time)."""
    deadline = time.monotonic() + seconds
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.1)
    return cond()


def mitdb_records(mitdb: Path, names) -> list[Path]:
    """Paths of the named MIT-BIH records; skips the test when one is missing."""
    missing = [n for n in names if not (mitdb / f"{n}.hea").exists()]
    if missing:
        unavailable(f"MIT-BIH records {missing} not found in {mitdb}")
    return [mitdb / n for n in names]


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """Four 3-minute synthetic records, made once per test session."""
    from vitaledge.firmware_sim.patients.ecg import synth_database

    d = tmp_path_factory.mktemp("synth")
    synth_database(d, n_records=4, minutes=3.0, seed=11)
    return d


@pytest.fixture(scope="session")
def tiny_run(synth_dir, tmp_path_factory):
    """The ``tiny`` beat model trained on the synthetic records: (run_dir, metrics)."""
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.train.config import BeatTrainConfig
    from vitaledge.train.fit import train_beat

    run = tmp_path_factory.mktemp("run")
    cfg = BeatTrainConfig(arch="tiny", records=str(synth_dir), window=WindowSpec.kachuee(),
                          split="beat", epochs=25, patience=25, batch_size=32,
                          learning_rate=3e-3, seed=1)
    metrics = train_beat(cfg, run, verbose=0)
    return run, metrics


@pytest.fixture(scope="session")
def converted(tiny_run, tmp_path_factory):
    """The tiny run converted to every target, unpruned and 50% pruned."""
    from vitaledge.convert.pipeline import ConvertOptions, convert_run

    run, _ = tiny_run
    out = tmp_path_factory.mktemp("art")
    opts = ConvertOptions(targets=["all"], sparsities=[0.0, 0.5], prune_epochs=3,
                          max_drop=5.0)
    results = convert_run(run, out, opts)
    return out, {r.variant: r for r in results}


#: Session fixtures that train or convert a model: every test file using one runs on the
#: same pytest-xdist worker, so the model is made once.
SHARED_MODEL = {"tiny_run", "converted"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Groups for ``make test``'s ``pytest -n auto --dist loadgroup``: a test file's tests
    run on one worker (its module fixtures are made once), and the files that use the
    session's trained model all run on one worker (it is trained and converted once).

    ``tryfirst``: pytest-xdist reads the ``xdist_group`` marks in its own hook of this name;
    this conftest is loaded before xdist's worker registers that hook, so without it the
    marks came after xdist had looked (every group split; tests/test_suite_groups.py)."""
    def file_of(item):
        return item.nodeid.split("::")[0]

    shared = {file_of(i) for i in items if SHARED_MODEL & set(i.fixturenames)}
    for item in items:
        group = "shared-model" if file_of(item) in shared else file_of(item)
        item.add_marker(pytest.mark.xdist_group(group))


#: Lines click adds around a usage error, and deprecation warnings: not the message.
BOILERPLATE = ("Usage:", "Try '", "Warning:")


def error_line(r) -> str:
    """The one line of a CliRunner result's output that is the message, after checking the
    basics: a non-zero exit, no crash, no traceback, one ``Error:`` line."""
    assert r.exit_code != 0, r.output
    assert isinstance(r.exception, SystemExit), repr(r.exception)  # not a crash
    assert "Traceback" not in r.output
    lines = [x for x in r.output.splitlines() if x.strip() and not x.startswith(BOILERPLATE)]
    assert len(lines) == 1, r.output
    assert lines[0].startswith("Error: "), r.output
    return lines[0]


def invoke(args: list):
    """``vitaledge ARGS`` in a CliRunner (each argument made a string)."""
    from click.testing import CliRunner

    from vitaledge.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def chromium() -> str | None:
    """The headless browser the review-page tests open pages in (None: not installed)."""
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def run_chromium(exe: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run",
           "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1200,800", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def review_data(html: str) -> dict:
    """The data a review page (``device review``, the noise-stress bench's pages) embeds."""
    m = re.search(r'<script type="application/json" id="review-data">(.*?)</script>', html,
                  re.S)
    assert m, "no embedded review data"
    return json.loads(m.group(1))


class FakeModel:
    """A beat model stand-in (kachuee windows, no RR features) answering class N."""

    def __init__(self):
        from vitaledge.device.dsp.windows import WindowSpec
        from vitaledge.device.model.manifest import SIGNAL_SPECS

        self.labels = ["N", "S", "V", "F", "Q"]
        self.manifest = SimpleNamespace(task="beat", labels=self.labels, sha256="0" * 64,
                                        signal=SIGNAL_SPECS["beat"](window=WindowSpec.kachuee()))

    def predict(self, x):
        y = np.zeros((len(x), 5), np.float32)
        y[:, 0] = 1.0
        return y
