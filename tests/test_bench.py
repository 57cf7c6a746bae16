"""The latency harness: agrees with an independent timing, validates its JSON schema,
compares result files, and marks broken artifacts ❌ with the reason."""

import json
import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench_result(converted, tmp_path_factory):
    from vitaledge.device.bench.latency import run_bench, save

    out, _ = converted
    # the held-out beats convert saved beside the artifacts (bench's own default when no data
    # is given comes from the root CLI's simulated patient, which a library caller lacks)
    res = run_bench([out / "cpu-int8", out / "cpu-fp32"], threads=[1], delegates=["xnnpack"],
                    batches=[1, 8], warmup=20, runs=300, data=str(out / "heldout.npz"))
    d = tmp_path_factory.mktemp("bench")
    save(res, d)
    return res, d


def test_p50_is_the_median_of_the_timed_calls_only(converted, monkeypatch):
    """Checks the harness, not the machine: the clock the timing loop reads is a fake one
    that only moves inside an interpreter call, by a scripted duration per call, so the
    row's statistics are exact — and the first call and the warm-up are not among them."""
    from types import SimpleNamespace

    from vitaledge.device.bench.latency import run_bench
    from vitaledge.device.model import timing
    from vitaledge.device.model.runtime import Model

    out, _ = converted
    warmup, runs = 5, 101
    timed_ms = np.random.default_rng(0).permutation(np.arange(1, runs + 1))  # 1..101 ms
    # the first call (timed on its own) and the warm-up take 1 s each: never in the stats
    script = [1.0] * (1 + warmup) + list(timed_ms * 1e-3)
    now = [0.0]
    invoke_raw = Model.invoke_raw

    def scripted_invoke(self, x):
        y = invoke_raw(self, x)
        now[0] += script.pop(0) if script else 0.0
        return y

    monkeypatch.setattr(Model, "invoke_raw", scripted_invoke)
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    (row,) = run_bench([out / "cpu-int8"], threads=[1], delegates=["xnnpack"], batches=[1],
                       warmup=warmup, runs=runs, data=str(out / "heldout.npz")).rows
    assert row.status == "✅" and row.count == runs, row
    assert not script, "every scripted call was made"
    approx = lambda v: pytest.approx(v, rel=1e-6)  # noqa: E731
    assert (row.min_ms, row.p50_ms, row.max_ms) == (approx(1.0), approx(51.0), approx(101.0))
    assert row.p90_ms == approx(91.0) and row.p99_ms == approx(100.0)
    assert row.mean_ms == approx(51.0) and row.per_window_ms == approx(51.0)


def test_real_timings_are_ordered(bench_result):
    res, _ = bench_result
    row = next(r for r in res.rows if r.variant.endswith("cpu-int8") and r.batch == 1)
    assert row.status == "✅" and row.count == 300
    assert 0 < row.min_ms <= row.p50_ms <= row.p90_ms <= row.p99_ms <= row.max_ms


def test_saved_json_validates_and_mutations_do_not(bench_result):
    from vitaledge.device.bench.latency import validate

    _, d = bench_result
    data = json.loads((d / "bench.json").read_text())
    validate(data)
    assert data["environment"]["backend"] in ("ai-edge-litert", "tflite-runtime")
    assert {r["batch"] for r in data["rows"]} == {1, 8}
    for mutate, msg in [(lambda x: x.update(schema="other/9"), "not a vitaledge.bench/1"),
                        (lambda x: x.pop("rows"), "missing 'rows'"),
                        (lambda x: x["rows"][0].pop("p50_ms"), "missing \\['p50_ms'\\]")]:
        bad = json.loads(json.dumps(data))
        mutate(bad)
        with pytest.raises(ValueError, match=msg):
            validate(bad)
    assert (d / "bench.csv").read_text().startswith("artifact,variant")
    assert "| variant |" in (d / "bench.md").read_text()


def test_compare_two_result_files(bench_result, converted, tmp_path):
    from click.testing import CliRunner

    from vitaledge.cli import main
    from vitaledge.device.bench.latency import run_bench, save

    _, d = bench_result
    out, _ = converted
    second = tmp_path / "two-threads"
    save(run_bench([out / "cpu-int8"], threads=[2], delegates=["xnnpack"], batches=[1],
                   warmup=5, runs=100), second)
    r = CliRunner().invoke(main, ["bench", "compare", str(d / "bench.json"),
                                  str(second / "bench.json")])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    one = next(x for x in lines if "cpu-int8" in x and x.split()[2:4] == ["1", "1"])
    two = next(x for x in lines if "cpu-int8" in x and x.split()[2:4] == ["2", "1"])
    assert one.split()[-1] == "-" and float(one.split()[-2]) > 0  # only in the first file
    assert two.split()[-2] == "-" and float(two.split()[-1]) > 0  # only in the second
    assert "two-threads:" in r.output
    assert "note: no row is in more than one file" in r.output  # nothing lines up: said


def test_broken_artifact_is_a_failed_row_with_the_reason(converted, tmp_path):
    from vitaledge.device.bench.latency import run_bench

    out, _ = converted
    bad = tmp_path / "bad"
    shutil.copytree(out / "cpu-int8", bad)
    (bad / "model.tflite").write_bytes(b"garbage")
    res = run_bench([bad], [1], ["xnnpack"], [1], warmup=1, runs=5)
    assert res.rows[0].status == "❌" and "bytes, manifest says" in res.rows[0].error


def test_a_failed_rows_reason_is_printed_whole(converted, tmp_path):
    """The console table used to cut a failure's reason at 90 characters and bench.json at
    300; a reason is one line in the table (whitespace folded) and whole in the file."""
    from vitaledge.device.bench.latency import format_table, run_bench

    out, _ = converted
    bad = tmp_path / ("an-artifact-directory-with-a-long-name-" * 3)
    shutil.copytree(out / "cpu-int8", bad)
    (bad / "model.tflite").write_bytes(b"garbage")
    res = run_bench([bad], [1], ["xnnpack"], [1], warmup=1, runs=5).to_dict()
    reason = res["rows"][0]["error"]
    assert len(reason) > 90 and str(bad) in reason and "manifest says" in reason
    row = [line for line in format_table(res).splitlines() if "❌" in line]
    assert len(row) == 1 and row[0].endswith(" ".join(reason.split())), row


def test_data_gives_accuracy_per_row(converted, synth_dir):
    from vitaledge.device.bench.latency import run_bench

    out, results = converted
    res = run_bench([out / "cpu-int8"], [1], ["xnnpack"], [1], warmup=1, runs=20,
                    data=str(synth_dir))
    row = res.rows[0]
    assert row.accuracy is not None and row.accuracy > 0.9 and row.macro_f1 > 0.85


def test_heldout_npz_from_convert_feeds_the_bench(converted):
    from vitaledge.device.bench.latency import run_bench

    out, results = converted
    res = run_bench([out / "cpu-int8"], [1], ["xnnpack"], [1], warmup=1, runs=5,
                    data=str(out / "heldout.npz"))
    assert res.rows[0].accuracy == pytest.approx(results["cpu-int8"].metrics["accuracy"],
                                                 abs=1e-5)


def test_bench_cli_shorthand_and_plots(converted, tmp_path):
    from click.testing import CliRunner

    from vitaledge.cli import main

    out, _ = converted
    r = CliRunner().invoke(main, ["bench", str(out / "cpu-int8"), "--runs", "20", "--warmup",
                                  "2", "--threads", "1,2", "--data",
                                  str(out / "heldout.npz"), "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert r.output.count("cpu-int8") == 2
    for f in ("bench.json", "bench.csv", "bench.md", "bench.txt", "latency.png",
              "accuracy_latency_size.png"):
        assert (tmp_path / f).stat().st_size > 0, f
    # a second bench into the same folder: refused, or with --overwrite it replaces the
    # first, and the accuracy figure of the first (this one has no --data) is not left
    again = ["bench", str(out / "cpu-int8"), "--runs", "5", "--warmup", "1", "--out",
             str(tmp_path)]
    r = CliRunner().invoke(main, again)
    assert r.exit_code == 2 and "holds bench.json (an earlier bench?)" in r.output, r.output
    # a folder holding only a file of the same name as one the bench writes: refused too
    # (a bench.md of the user's own was replaced without a word)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "bench.md").write_text("mine\n")
    r = CliRunner().invoke(main, [*again[:-1], str(mine)])
    assert r.exit_code == 2 and "holds bench.md" in r.output, r.output
    assert (mine / "bench.md").read_text() == "mine\n"
    r = CliRunner().invoke(main, [*again, "--overwrite"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "latency.png").exists()
    assert not (tmp_path / "accuracy_latency_size.png").exists()
    assert len(json.loads((tmp_path / "bench.json").read_text())["rows"]) == 1


def test_stream_bench_reports_latency_and_realtime_factor(converted, synth_dir):
    from vitaledge.device.bench.stream import bench_stream, format_stream

    out, _ = converted
    res = bench_stream(out / "cpu-int8", synth_dir, chunk_s=0.1, names=["s001"])
    row = res["rows"][0]
    assert row["beats"] > 150 and row["realtime_factor"] > 1
    # an event needs the detector's 200 ms look-ahead and the window after the R peak, and
    # (gating) its 2-s quality block judged: a lower bound only, no timing bar
    assert 200 <= row["r_to_event_ms_p50"] <= row["r_to_event_ms_p95"] <= row["r_to_event_ms_p99"]
    # streams per core is the factor rounded down; the factor is kept to 0.1, so 516.97
    # shows as 517.0 beside 516 streams
    assert row["streams_per_core"] <= row["realtime_factor"] <= row["streams_per_core"] + 1
    assert isinstance(row["streams_per_core"], int)
    assert "s001" in format_stream(res)
    # every beat the daemon emits, those decided at the stream's end too (flush's were lost)
    from vitaledge.device.io.records import read_record
    from vitaledge.device.model.runtime import Model
    from vitaledge.device.stream.pipeline import BeatPipeline

    rec = read_record(synth_dir / "s001", annotator=None)
    pipe = BeatPipeline(Model(out / "cpu-int8"), rec.fs)
    beats = [e for e in pipe.process(rec.signal) + pipe.flush() if e["type"] == "beat"]
    assert row["beats"] == len(beats)


def test_stream_bench_keeps_a_record_without_a_beat_beside_the_others(converted, synth_dir,
                                                                       tmp_path):
    """A flat record made np.percentile of nothing raise IndexError: a traceback, and the
    other records' rows lost."""
    import wfdb

    from vitaledge.device.bench.stream import bench_stream, format_stream

    data = tmp_path / "mix"
    data.mkdir()
    for ext in ("hea", "dat", "atr"):
        shutil.copy(synth_dir / f"s001.{ext}", data)
    wfdb.wrsamp("flat", fs=360, units=["mV"], sig_name=["MLII"], p_signal=np.zeros((21600, 1)),
                fmt=["212"], write_dir=str(data))
    wfdb.wrann("flat", "atr", np.array([3600, 7200]), np.array(["N", "N"]),
               write_dir=str(data))  # the bench streams annotated records
    out, _ = converted
    res = bench_stream(out / "cpu-int8", data, chunk_s=0.1)
    rows = {r["record"]: r for r in res["rows"]}
    assert rows["flat"]["beats"] == 0 and rows["flat"]["r_to_event_ms_p50"] is None
    assert rows["s001"]["beats"] > 150 and rows["s001"]["r_to_event_ms_p50"] > 0
    [flat] = [ln for ln in format_stream(res).splitlines() if ln.startswith("flat")]
    assert flat.split()[2] == "0" and flat.split()[-5:] == ["-"] * 5


def test_stream_bench_names_a_record_whose_rate_the_model_cannot_take(converted, tmp_path):
    from vitaledge.device.bench.stream import bench_stream
    from vitaledge.firmware_sim.patients.ecg import synth_database

    [rec] = synth_database(tmp_path / "d", n_records=1, minutes=1.0, seed=2, fs=10.0)
    out, _ = converted
    with pytest.raises(ValueError, match=rf"^{rec.with_suffix('')}: 10 Hz: filter high edge"):
        bench_stream(out / "cpu-int8", tmp_path / "d")


def test_keras_baseline_rows_score_the_same_held_out_beats(converted, tiny_run):
    import vitaledge.cli  # noqa: F401 - registers the Keras baseline, as the CLI does
    from vitaledge.device.bench.latency import run_bench

    out, _ = converted
    run, metrics = tiny_run
    res = run_bench([out / "cpu-fp32"], [1], ["xnnpack"], [1], warmup=2, runs=20,
                    data=str(out / "heldout.npz"), keras_runs=[str(run)])
    keras_rows = [r for r in res.rows if r.delegate == "tf"]
    assert [r.variant.split("/")[1] for r in keras_rows] == ["keras call", "keras tf.function"]
    for r in keras_rows:
        assert r.accuracy == pytest.approx(metrics["accuracy"], abs=1e-5)
        assert r.count == 20 and r.p50_ms > 0
    tflite = res.rows[-1]
    assert tflite.accuracy == pytest.approx(metrics["accuracy"], abs=1e-5)


def test_missing_delegates_fail_their_rows_with_the_library_named(converted):
    import vitaledge.cli  # noqa: F401 - registers the synthetic beats run_bench takes without --data
    from vitaledge.device.bench.latency import run_bench

    out, _ = converted
    res = run_bench([out / "cpu-int8"], [1], ["none", "edgetpu"], [1], warmup=1, runs=5)
    none, tpu = res.rows
    assert none.status == "✅" and none.p50_ms > 0
    if tpu.status == "❌":  # no Coral on this machine
        assert "libedgetpu.so.1" in tpu.error and "--delegate xnnpack or none" in tpu.error
        assert "--fallback" not in tpu.error  # device run's option; bench has none


def test_a_bench_whose_every_row_failed_says_so_not_that_matplotlib_is_missing(converted,
                                                                                tmp_path,
                                                                                capsys):
    import vitaledge.cli  # noqa: F401 - registers the synthetic beats run_bench takes
    from vitaledge.device.bench.latency import run_bench, save
    from vitaledge.device.bench.plots import have_matplotlib

    out, _ = converted
    res = run_bench([out / "cpu-int8"], [1], ["/nonexistent/libdelegate.so"], [1], warmup=1,
                    runs=3)
    assert [r.status for r in res.rows] == ["❌"]
    save(res, tmp_path)
    said = capsys.readouterr().out
    assert have_matplotlib() and "plots skipped: no row was measured" in said, said
    assert "not installed" not in said


# ---- fast: no model is trained for these -------------------------------------------------

def test_a_delegate_that_does_not_load_names_the_benchs_own_options(tmp_path, monkeypatch):
    """The interpreter's hint names ``device run --fallback cpu``; ``bench run`` has no
    such option, its row says how to time the CPU instead."""
    from types import SimpleNamespace

    from conftest import invoke

    from vitaledge.device.bench import latency
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.device.model.runtime import get_backend, make_interpreter

    m = SimpleNamespace(task="beat", inputs=[SimpleNamespace(name="beat")], size_bytes=1,
                        labels=["N"], signal=SimpleNamespace(window=WindowSpec.kachuee()))
    monkeypatch.setattr(latency, "load_manifest", lambda *a, **k: (m, tmp_path))
    monkeypatch.setattr(latency, "bench_inputs", lambda *a, **k: (np.zeros((1, 4)), None, {}))
    monkeypatch.setattr(latency, "Model", lambda art, backend=None, threads=1, delegate="":
                        make_interpreter(b"", get_backend(backend), threads, delegate))
    r = invoke(["bench", "run", tmp_path, "--delegate", "bogus", "--runs", "1"])
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), repr(r.exception)
    assert "cannot load the bogus delegate" in r.output, r.output
    assert "--fallback" not in r.output and "--delegate xnnpack or none" in r.output


def _bench_json(path, change=lambda d: None):
    """A bench.json as ``bench run --out`` saves it (one row), after ``change``."""
    from vitaledge.device.bench.latency import OK, SCHEMA, BenchResult, BenchRow

    env = {"cpu": "Test CPU", "cpu_features": ["avx2"], "machine": "x86_64", "cores": 2,
           "python": "3.11", "numpy": "2.0", "backend": "ai-edge-litert",
           "backend_version": "2.3.0", "affinity": [0, 1]}
    row = BenchRow("a/cpu-int8", "a/cpu-int8", "xnnpack", 1, 1, OK, p50_ms=0.25)
    d = BenchResult(SCHEMA, env, {"threads": [1]}, [row]).to_dict()
    change(d)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize("change, said", [
    (lambda d: d.update(rows=None), "'rows' is NoneType, expected a list"),
    (lambda d: d.update(rows="x"), "'rows' is str, expected a list"),
    (lambda d: d["rows"][0].update(p50_ms=None), "row 0.p50_ms: expected float, got None"),
    (lambda d: d["rows"][0].update(threads="x"), "row 0.threads: expected int, got 'x'"),
    (lambda d: d.update(rows=[[1]]), "row 0 is list, expected an object"),
    (lambda d: d.update(environment="x"), "'environment' is str, expected an object"),
    (lambda d: d["environment"].update(cores="two"), "environment.cores is 'two'"),
    (lambda d: d["environment"].update(cpu_features="avx2"), "environment.cpu_features"),
    (lambda d: d.update(settings=[]), "'settings' is list, expected an object"),
    (lambda d: d.clear(), "not a vitaledge.bench/1 result"),
    (lambda d: d["rows"].append({**d["rows"][0], "p50_ms": 0.3}),  # one artifact twice
     "rows 0 and 1 are the same row (a/cpu-int8, xnnpack, 1 threads, batch 1)"),
])
def test_compare_names_the_file_and_the_bad_field(tmp_path, change, said):
    from conftest import error_line, invoke

    good = _bench_json(tmp_path / "ok" / "bench.json")
    bad = _bench_json(tmp_path / "bad" / "bench.json", change)
    line = error_line(invoke(["bench", "compare", good, bad]))
    assert f"{bad}: " in line and said in line, line


def test_compare_says_when_two_artifacts_of_one_name_share_a_row(tmp_path):
    """bench run x/art/cpu-int8 y/art/cpu-int8 names both rows art/cpu-int8: compare takes
    the file and says it shows the first (it showed one in silence)."""
    from conftest import invoke

    two = _bench_json(tmp_path / "two" / "bench.json", lambda d: d["rows"].append(
        {**d["rows"][0], "artifact": "b/cpu-int8", "p50_ms": 0.3}))
    r = invoke(["bench", "compare", two])
    assert r.exit_code == 0, r.output
    assert "holds 1 row(s) of artifacts named alike (a/cpu-int8): shown is the first" \
        in r.output


def test_compare_names_a_file_that_holds_no_object(tmp_path):
    from conftest import error_line, invoke

    good = _bench_json(tmp_path / "ok" / "bench.json")
    (tmp_path / "list.json").write_text("[]")
    line = error_line(invoke(["bench", "compare", good, tmp_path / "list.json"]))
    assert f"{tmp_path / 'list.json'}: not a JSON object" in line, line


def test_compare_of_good_files_still_prints_the_table(tmp_path):
    from conftest import invoke

    a = _bench_json(tmp_path / "pi" / "bench.json")
    b = _bench_json(tmp_path / "x86" / "bench.json",
                    lambda d: d["environment"].pop("cpu_features"))  # saved before it was
    r = invoke(["bench", "compare", a, b])
    assert r.exit_code == 0, r.output
    assert "0.25" in r.output and "x86: Test CPU" in r.output
    assert "CPU features not recorded" in r.output


def test_the_markdown_table_gives_a_failed_rows_reason_and_the_machine():
    """bench.md showed a failed row as zeros and '-' with no reason, and no footer."""
    from vitaledge.device.bench.latency import COLUMNS, format_markdown

    env = {"cpu": "Xeon", "cores": 2, "cpu_features": ["avx2"], "backend": "ai-edge-litert",
           "backend_version": "2.3.0", "numpy": "2.3"}
    ok = {k: 1 for k, *_ in COLUMNS} | {"variant": "a/cpu-int8", "status": "✅",
                                        "delegate": "xnnpack", "noisy": True}
    bad = {k: 0 for k, *_ in COLUMNS} | {"variant": "a/cpu-int8", "status": "❌",
                                         "delegate": "edgetpu", "threads": 1, "batch": 1,
                                         "error": "cannot load the edgetpu delegate | x"}
    lines = format_markdown({"rows": [ok, bad], "environment": env}).splitlines()
    assert lines[2].endswith("(noisy: wide spread)")
    cells = [c.strip() for c in lines[3].strip("|").split(" | ")]
    assert cells[:6] == ["a/cpu-int8", "❌", "edgetpu", "1", "1",
                         "cannot load the edgetpu delegate \\| x"], cells
    assert lines[3].count("|") - lines[3].count("\\|") == len(COLUMNS) + 1
    assert lines[-1] == "Xeon · 2 cores · avx2 · ai-edge-litert 2.3.0 · numpy 2.3"


def test_compare_tells_same_named_folders_apart_and_fits_long_variant_names(tmp_path):
    """Two machines' results in folders both named int8 gave two 'int8' columns, and a
    long variant name ran into the delegate column."""
    from conftest import invoke

    long_name = "runs/dechazal-ens-art/cpu-int8-pruned50-qat"

    def rename(d):
        d["rows"][0]["variant"] = long_name

    a = _bench_json(tmp_path / "pi" / "int8" / "bench.json", rename)
    b = _bench_json(tmp_path / "x86" / "int8" / "bench.json",
                    lambda d: (rename(d), d["rows"][0].update(p50_ms=0.5)))
    r = invoke(["bench", "compare", a, b])
    assert r.exit_code == 0, r.output
    head, row = r.output.splitlines()[:2]
    assert head.split()[-2:] == ["pi/int8", "x86/int8"], head
    assert row.split() == [long_name, "xnnpack", "1", "1", "0.25", "0.5"], row
    assert "pi/int8: Test CPU" in r.output and "x86/int8: Test CPU" in r.output
    assert "note:" not in r.output  # the row is in both


def test_a_keras_run_the_inputs_do_not_fit_fails_its_row_not_the_bench(converted, tiny_run,
                                                                         tmp_path):
    """--keras with a two-input run and a run whose model is missing: each gets a failed
    row saying why, and the artifact's row and the good run's rows are still measured (one
    bad run threw every row away, with a traceback for the two-input model)."""
    import vitaledge.cli  # noqa: F401 - registers the Keras baseline, as the CLI does
    from vitaledge.device.bench.latency import FAIL, OK, run_bench
    from vitaledge.train.backend import keras

    out, _ = converted
    run, _ = tiny_run
    two = tmp_path / "two-inputs"
    two.mkdir()
    a, b = keras.layers.Input((8,)), keras.layers.Input((4,))
    keras.Model([a, b], keras.layers.Dense(5)(keras.layers.Concatenate()([a, b]))).save(
        two / "model.keras")
    empty = tmp_path / "no-model"
    empty.mkdir()
    res = run_bench([out / "cpu-fp32"], [1], ["xnnpack"], [1], warmup=2, runs=5,
                    data=str(out / "heldout.npz"),
                    keras_runs=[str(two), str(empty), str(run)])
    by_run = {}
    for r in res.rows:
        by_run.setdefault(r.artifact, []).append(r)
    (bad_two,) = by_run[str(two)]
    assert bad_two.status == FAIL and "single-input models only" in bad_two.error
    (bad_empty,) = by_run[str(empty)]
    assert bad_empty.status == FAIL and "model.keras" in bad_empty.error
    assert [r.status for r in by_run[str(run)]] == [OK, OK]
    assert by_run[str(out / "cpu-fp32")][0].status == OK


def test_held_out_inputs_with_no_windows_fail_the_row_in_one_line(converted, tmp_path):
    """A heldout.npz cut to 0 rows: the row fails saying so (it raised ZeroDivisionError)."""
    from vitaledge.device.bench.latency import FAIL, run_bench
    from vitaledge.device.io.heldout import read_heldout, write_heldout

    out, _ = converted
    h = read_heldout(out / "heldout.npz")
    empty = write_heldout(tmp_path / "empty.npz", [a[:0] for a in h.inputs], h.y[:0], h.signal)
    res = run_bench([out / "cpu-int8"], [1], ["xnnpack"], [1], warmup=2, runs=5,
                    data=str(empty))
    (row,) = res.rows
    assert row.status == FAIL and row.error == f"no windows to time in {empty}"


def test_peak_memory_is_in_the_same_megabytes_as_the_current_memory():
    """ru_maxrss is KiB; read as kB the peak came out 2.4 % low, below the memory the
    process held after loading a model (bench.json: before 144.57, peak 142.84 MB)."""
    import subprocess
    import sys

    # a fresh process, 100 MB resident at the measurement: now is (near) its own peak
    code = ("import numpy as np; from vitaledge.device.model.memory import peak_rss_mb, "
            "rss_mb; hold = np.ones(100_000_000 // 8); print(rss_mb(), peak_rss_mb())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    now, peak = map(float, out.split())
    # the kernel's counters behind the two lag by a few pages each: 1 % is far more than
    # that, and less than half the 2.4 % the KiB/kB slip took off (no upper bound: Linux
    # keeps the peak of the process that started it across exec, a big pytest worker's)
    assert peak >= now * 0.99
