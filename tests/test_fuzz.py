"""Fuzzing the decoders and loaders (issue 8): random and mutated inputs raise only the
documented error types. The long run (>= 100,000 inputs per target) is
``vitaledge device reliability fuzz``; see docs/reliability.md."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitaledge.device.bench.reliability.corpus import manifest_seed
from vitaledge.device.bench.reliability.fuzz import (
    FUZZ_TARGETS,
    documented_errors,
    mutate,
    run_fuzz,
)

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _check(target: str, data: bytes) -> None:
    try:
        FUZZ_TARGETS[target].run(data)
    except documented_errors(target):
        pass


def _mutated(target: str):
    seeds = FUZZ_TARGETS[target].seeds()
    return st.builds(lambda r, i: mutate(r, seeds[i % len(seeds)], seeds),
                     st.randoms(use_true_random=False), st.integers(0, 7))


@pytest.mark.parametrize("target", list(FUZZ_TARGETS))
def test_seed_corpus_is_valid(target):
    """The seeds exercise the success path: every target accepts its own seeds."""
    for data in FUZZ_TARGETS[target].seeds():
        FUZZ_TARGETS[target].run(data)  # raises on any error, documented or not


@pytest.mark.parametrize("target", list(FUZZ_TARGETS))
@SETTINGS
@given(data=st.data())
def test_random_and_mutated_inputs_raise_only_documented_errors(target, data):
    blob = data.draw(st.one_of(st.binary(max_size=1024), _mutated(target)))
    _check(target, blob)


_json = st.recursive(st.none() | st.booleans() | st.integers() |
                     st.floats(allow_nan=False) | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6),
                                                                          c, max_size=3),
                     max_leaves=4)


@SETTINGS
@given(path=st.lists(st.sampled_from(["input", "output", "quantization", "shape", "labels",
                                      "signal", "scale", "zero_point", "dtype", "task",
                                      "schema_version", "extra_inputs", "sha256",
                                      "size_bytes", "model_file", "pruning"]),
                     min_size=1, max_size=3),
       value=_json, drop=st.booleans())
def test_structurally_mutated_manifests_raise_only_manifest_error(path, value, drop):
    m = json.loads(manifest_seed())
    node = m
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            break
        node = node[key]
    if drop:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    _check("manifest", json.dumps(m).encode())


def test_run_fuzz_counts_and_reports_unexpected_exceptions(monkeypatch):
    """The long-run harness: counts add up, and an undocumented exception is reported
    with its input (a target that raises KeyError on some inputs)."""
    r = run_fuzz("protocol", 300, seed=4)
    assert r["ok"] + r["documented_errors"] + r["unexpected"] + r["hangs"] == 300
    assert r["unexpected"] == 0 and r["hangs"] == 0

    def flaky(data: bytes) -> None:
        if len(data) % 3 == 0:
            raise KeyError("boom")

    monkeypatch.setitem(FUZZ_TARGETS, "protocol",
                        FUZZ_TARGETS["protocol"].__class__("protocol", flaky,
                                                           FUZZ_TARGETS["protocol"].seeds))
    r = run_fuzz("protocol", 90, seed=4)
    assert r["unexpected"] > 0 and r["examples"][0]["error"].startswith("KeyError")
    bytes.fromhex(r["examples"][0]["input"])


def test_mutation_is_reproducible():
    seeds = FUZZ_TARGETS["protocol"].seeds()
    a = [mutate(random.Random(9), seeds[0], seeds) for _ in range(3)]
    b = [mutate(random.Random(9), seeds[0], seeds) for _ in range(3)]
    assert a == b and any(x != seeds[0] for x in a)


# Regressions for what the long fuzz run found (fixed in device/stream/sources.py and
# device/io/kaggle_csv.py): undecodable bytes raised UnicodeDecodeError, a value beyond
# float32 passed the finite check and became inf in the float32 beat array.

def test_csv_replay_with_undecodable_bytes_is_a_source_error(tmp_path):
    from vitaledge.device.stream.sources import SourceError, read_csv_samples

    p = tmp_path / "x.csv"
    p.write_bytes(b"ecg\n0.1\n\xd3\xff\n0.2\n")
    with pytest.raises(SourceError, match=r"x.csv:3: not a number"):
        read_csv_samples(p)
    # a long line of garbage is shown by its start and length, not whole
    p.write_bytes(b"ecg\n0.1\n" + b"\xd3N" * 150 + b"\n")
    with pytest.raises(SourceError, match=r"x.csv:3: not a number: '.+'\.\.\. "
                                          r"\(300 characters\)$") as err:
        read_csv_samples(p)
    assert len(str(err.value)) < len(str(p)) + 300, err.value


def test_kaggle_csv_with_undecodable_bytes_or_huge_values_is_refused(tmp_path):
    from vitaledge.device.io.kaggle_csv import CsvFormatError, load_kaggle_csv

    p = tmp_path / "k.csv"
    p.write_bytes(b"0.5," * 187 + b"0\n\xc1\xff\n")
    with pytest.raises(CsvFormatError, match="not a readable UTF-8"):
        load_kaggle_csv(p)
    p.write_bytes(b"1e300," + b"0.5," * 186 + b"0\n")
    with pytest.raises(CsvFormatError, match="k.csv:1: NaN, infinite or beyond-float32"):
        load_kaggle_csv(p)


def test_wfdb_header_gain_that_is_not_a_number_is_a_record_error(tmp_path):
    """Found by the long run: the header pattern admits "200-0" as a gain; the light
    reader raised ValueError instead of handing the record to wfdb."""
    from vitaledge.device.io.records import RecordError, read_record
    from vitaledge.device.io.wfdb_signals import read_signals

    (tmp_path / "r.hea").write_text("r 1 360 4\nr.dat 16 200-0 11 1024 0 0 0 MLII\n")
    (tmp_path / "r.dat").write_bytes(b"\x01\x00" * 4)
    assert read_signals(tmp_path / "r") is None
    with pytest.raises(RecordError, match=r"r\.hea: signal 0's ADC gain '200-0' is not a number"):
        read_record(tmp_path / "r", annotator=None)
    # a negative sample count (second long run) is not decoded here either
    (tmp_path / "r.hea").write_text("r 1 360 -4\nr.dat 16 200 11 1024 0 0 0 MLII\n")
    assert read_signals(tmp_path / "r") is None
    # and a record whose rate is not plausible is refused by name
    (tmp_path / "r.hea").write_text("r 1 0 4\nr.dat 16 200 11 1024 0 0 0 MLII\n")
    with pytest.raises(RecordError, match="sample rate 0 Hz is outside 10-10000 Hz"):
        read_record(tmp_path / "r", annotator=None)


# ---- the command's own bad input ---------------------------------------------------------

def test_fuzz_json_to_an_unwritable_path_is_one_error_line(tmp_path):
    """A --json that cannot be written is one line before the campaign runs (it was a
    ``cannot write`` error after the whole campaign); a missing folder is made, as the
    sinks make theirs."""
    from conftest import invoke

    (tmp_path / "afile").write_text("")
    r = invoke(["device", "reliability", "fuzz", "--target", "csv", "--inputs", "5",
                "--json", tmp_path / "afile" / "fuzz.json"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output
    errors = [x for x in r.output.splitlines() if x.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"Error: --json {tmp_path / 'afile' / 'fuzz.json'}: cannot create"), r.output
    assert not [x for x in r.output.splitlines() if x.startswith("{")]  # nothing ran
    r = invoke(["device", "reliability", "fuzz", "--target", "csv", "--inputs", "5",
                "--json", tmp_path / "no-such-dir" / "fuzz.json"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "no-such-dir" / "fuzz.json").read_text())[0]["inputs"] == 5


@pytest.mark.parametrize("n", ["-5", "0"])
def test_fuzz_refuses_fewer_than_one_input(n):
    from conftest import error_line, invoke

    line = error_line(invoke(["device", "reliability", "fuzz", "--target", "csv",
                              "--inputs", n]))
    assert "--inputs" in line and n in line, line


def test_the_fuzz_command_gives_logging_back(tmp_path):
    """fuzz silences the loaders' warnings for its campaign; it left logging disabled for
    the whole process (a later test's caplog saw nothing)."""
    import logging

    from conftest import invoke

    invoke(["device", "reliability", "fuzz", "--target", "csv", "--inputs", "3",
            "--json", tmp_path / "f.json"])
    assert logging.root.manager.disable == logging.NOTSET
