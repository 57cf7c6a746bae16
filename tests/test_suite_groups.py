"""``make test`` runs the suite with ``-n auto --dist loadgroup``: every test file's tests on
one worker (module fixtures made once) and the files sharing the session's trained model on
one worker. When the grouping breaks nothing fails, the suite only runs slower (the shared
model trained once per worker), so this test runs two small files the way make test does
and reads which worker ran each test."""

import os
import re
import subprocess
import sys
from collections import defaultdict

from conftest import REPO

FILES = ("tests/test_aami.py", "tests/test_metrics.py")


def test_make_tests_xdist_groups_keep_each_file_on_one_worker():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "XDIST_"))}
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v",
                        "-n", "2", "--dist", "loadgroup", *FILES],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ran = re.findall(r"\[(gw\d+)\] .*?PASSED (tests/\S+?)::(\S+)", r.stdout)
    assert len(ran) >= 4, r.stdout[-2000:]
    workers = defaultdict(set)
    for worker, file, name in ran:
        # xdist marks a grouped test by its group after an @ in the id it reports
        assert name.endswith(f"@{file}"), f"{file}::{name} ran without its file's group"
        workers[file].add(worker)
    assert set(workers) == set(FILES)
    assert all(len(w) == 1 for w in workers.values()), dict(workers)
