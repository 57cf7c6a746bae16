"""Latency benchmark harness for converted artifacts (TensorFlow-free: runs on the Pi).

Method, after TFLite's ``benchmark_model``: the interpreter is created and allocated (load
time), one first inference is timed on its own, ``warmup`` runs are discarded, then timed
runs (``runs``, or as many as fit in ``min_seconds``) each time one ``invoke()`` — plus
(de)quantization when ``batch`` > 1 goes through ``Model.predict``. Thread counts are
explicit (the LiteRT Python interpreter's default is 1 thread; ``benchmark_model``'s is
more). Inputs are real windows when data is given, otherwise synthetic beats — never zeros.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vitaledge.device.bench.baselines import BASELINES, DEFAULT_INPUTS
from vitaledge.device.dsp.spec_fields import SpecError, read_fields
from vitaledge.device.dsp.windows import WindowSpec
from vitaledge.device.eval.metrics import classification_metrics
from vitaledge.device.io.beats import beats_from_dir
from vitaledge.device.io.heldout import read_heldout
from vitaledge.device.model.manifest import ManifestError, load_manifest
from vitaledge.device.model.memory import peak_rss_mb, rss_mb
from vitaledge.device.model.runtime import CPU_HINT, FALLBACK_HINT, Model, ModelLoadError
from vitaledge.device.model.timing import stats_ms, time_calls

SCHEMA = "vitaledge.bench/1"
OK, DROP, FAIL = "✅", "❎", "❌"


@dataclass
class BenchRow:
    artifact: str
    variant: str
    delegate: str
    threads: int
    batch: int
    status: str = FAIL
    error: str = ""
    size_bytes: int = 0
    load_ms: float = 0.0
    first_ms: float = 0.0
    count: int = 0
    mean_ms: float = 0.0
    std_ms: float = 0.0
    min_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    per_window_ms: float = 0.0
    windows_per_s: float = 0.0
    rss_before_mb: float = 0.0
    rss_after_load_mb: float = 0.0
    peak_rss_mb: float = 0.0
    accuracy: float | None = None
    macro_f1: float | None = None
    noisy: bool = False


@dataclass
class BenchResult:
    schema: str
    environment: dict
    settings: dict
    rows: list[BenchRow] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"schema": self.schema, "environment": self.environment,
                "settings": self.settings, "rows": [asdict(r) for r in self.rows]}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: Instruction-set features that change inference speed, by the name /proc/cpuinfo gives
#: them: x86 (``flags``) vector and int8 dot-product units, AMX tiles; aarch64
#: (``Features``) dot product, int8 matrix multiply, scalable vectors.
CPU_FEATURES = {"x86": ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni",
                        "amx_tile", "amx_int8", "amx_bf16"),
                "arm": ("asimd", "asimddp", "i8mm", "bf16", "sve", "sve2")}


def cpu_features(cpuinfo: str | None = None) -> list[str]:
    """The :data:`CPU_FEATURES` this CPU has (Linux /proc/cpuinfo; [] elsewhere), so a
    figure says which machine it comes from. ``avx_vnni`` is what Linux calls AVX-VNNI,
    ``asimddp`` the Arm dot-product extension."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            have = set(value.split())
            wanted = CPU_FEATURES["x86" if key.strip() == "flags" else "arm"]
            return [f for f in wanted if f in have]
    return []


def environment(backend: str | None) -> dict:
    from vitaledge.device.model.runtime import get_backend

    b = get_backend(backend)
    return {"cpu": _cpu_model(), "cpu_features": cpu_features(),
            "machine": platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__,
            "backend": b.name, "backend_version": b.version,
            "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None}


def bench_inputs(spec: WindowSpec, data: str | None, n: int = 512, seed: int = 0,
                 n_labels: int | None = None) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(windows, labels, order): ``data`` is a WFDB directory (every annotated beat) or
    the ``heldout.npz`` that ``vitaledge convert`` writes (the run's held-out beats);
    without data, synthetic beats. ``order`` is each beat's patient and time
    (``groups``, ``times``) when known, for decisions made over a patient's beats. A
    heldout.npz's labels must be below ``n_labels``, the model's class count."""
    if data and str(data).endswith(".npz"):
        h = read_heldout(data, n_labels)
        if h.signal.get("window") != spec.to_dict():
            raise ValueError(f"{data}: windows were made with another window spec")
        if int(np.prod(h.inputs[0].shape[1:])) != spec.length:
            raise ValueError(f"{data}: windows of {list(h.inputs[0].shape[1:])} samples; the "
                             f"window spec makes {spec.length}")
        return h.inputs[0], h.y, {"groups": h.groups, "times": h.times}
    if data:
        beats = beats_from_dir(data, spec)
        return beats.X, beats.y, {"groups": beats.record, "times": beats.sample}
    if "synthetic" not in DEFAULT_INPUTS:
        raise ValueError("no --data given and no simulated patient registered: give --data "
                         "DIR (WFDB records) or --data HELDOUT.npz")
    X, y = DEFAULT_INPUTS["synthetic"](spec, n, seed)
    return X, y, {}


def task_inputs(manifest, data: str | None, artifact: Path
                ) -> tuple[object, np.ndarray | None, dict]:
    """(inputs, labels, order) for an emotion model or a beat model with RR features: the
    ``heldout.npz`` that ``vitaledge convert`` writes beside the artifacts (or ``data``,
    such a file): one array per model input (a list for multi-input models), the labels,
    and each beat's patient and time when the file has them (:func:`bench_inputs`)."""
    if data and not str(data).endswith(".npz"):
        raise ValueError(f"{artifact}: a {manifest.task} model with inputs "
                         f"{', '.join(t.name for t in manifest.inputs)} is benchmarked on "
                         f"the held-out inputs convert saves, not on --data {data}: give "
                         "--data HELDOUT.npz, or no --data for the artifact's own")
    path = Path(data) if data else artifact.parent / "heldout.npz"
    if not path.exists():
        raise ValueError(f"{artifact}: a {manifest.task} model is benchmarked on the held-out "
                         f"inputs convert saves ({path} not found; give --data HELDOUT.npz)")
    h = read_heldout(path, len(manifest.labels))
    if h.signal != manifest.signal.to_dict():
        raise ValueError(f"{path}: inputs were made with another signal spec")
    problem = manifest.rows_problem(h.inputs)  # X_i is the manifest's input i
    if problem:
        raise ValueError(f"{path}: {problem}")
    return h.x, h.y, {"groups": h.groups, "times": h.times}


def _take(X, idx):
    return [a[idx] for a in X] if isinstance(X, list) else X[idx]


def record_timing(row: BenchRow, times: np.ndarray, batch: int) -> None:
    """Latency statistics, throughput and the noise flag of ``times`` into ``row``."""
    for k, v in stats_ms(times).items():
        setattr(row, k, round(v, 5) if isinstance(v, float) else v)
    row.per_window_ms = round(row.p50_ms / batch, 5)
    row.windows_per_s = round(1e3 / row.per_window_ms, 1) if row.per_window_ms else 0.0
    row.noisy = bool(row.p90_ms > 1.5 * row.p50_ms or row.std_ms > 0.5 * row.mean_ms)


def bench_one(artifact: Path, delegate: str, threads: int, batch: int, X: np.ndarray,
              y: np.ndarray | None, warmup: int, runs: int | None, min_seconds: float,
              backend: str | None, max_drop: float, order: dict | None = None) -> BenchRow:
    row = BenchRow(str(artifact), f"{artifact.resolve().parent.name}/{artifact.name}",
                   delegate, threads, batch)
    try:
        manifest, path = load_manifest(artifact)
        row.size_bytes = manifest.size_bytes
        row.rss_before_mb = rss_mb()
        t = time.perf_counter()
        model = Model(artifact, backend=backend, threads=threads, delegate=delegate)
        row.load_ms = (time.perf_counter() - t) * 1e3
        row.rss_after_load_mb = rss_mb()
        xs = X if isinstance(X, list) else [X]
        xq = [model.quantize_input(a.reshape((-1, *model.input_shapes[k][1:])), k)
              for k, a in enumerate(xs)]  # outside the timed calls
        n = len(xq[0])

        def one(i: int):
            part = [a[i % n][None] for a in xq]
            return model.invoke_raw(part if len(part) > 1 else part[0])

        t = time.perf_counter()
        one(0)
        row.first_ms = (time.perf_counter() - t) * 1e3
        if batch == 1:
            times = time_calls(one, warmup, runs, min_seconds)
        else:
            times = time_calls(lambda i: model.predict(_take(X, (np.arange(batch) + i * batch)
                                                             % n)), warmup, runs, min_seconds)
        record_timing(row, times, batch)
        row.peak_rss_mb = peak_rss_mb()
        row.status = OK
        if y is not None:
            pred = model.decide(model.predict(X), X, **(order or {}))
            m = classification_metrics(y, pred, model.labels)
            row.accuracy, row.macro_f1 = round(m["accuracy"], 5), round(m["macro"]["f1"], 5)
            ref = manifest.metrics.get("accuracy")
            if ref is not None and manifest.metrics.get("n") == len(y) and (
                    ref - row.accuracy) * 100 > max_drop:
                row.status = DROP
    except (ManifestError, ModelLoadError, ValueError, RuntimeError) as exc:
        row.status, row.error = FAIL, str(exc).replace(FALLBACK_HINT, CPU_HINT)
    except MemoryError as exc:  # numpy's _ArrayMemoryError too: --batch 1000000000
        row.status, row.error = FAIL, f"out of memory at batch {batch}: {exc}"
    return row


def run_bench(artifacts: list[Path], threads: list[int], delegates: list[str],
              batches: list[int], warmup: int = 50, runs: int | None = None,
              min_seconds: float = 2.0, data: str | None = None, backend: str | None = None,
              max_drop: float = 1.0, keras_runs: list[str] | None = None,
              pin: list[int] | None = None,
              progress: Callable[[int, int, str], None] | None = None) -> BenchResult:
    """Every artifact x delegate x threads x batch; ``progress`` is called before each
    with (rows done, rows in all, the row about to be timed)."""
    if pin:
        os.sched_setaffinity(0, pin)
    env = environment(backend)
    res = BenchResult(SCHEMA, env, {"threads": threads, "delegates": delegates,
                                    "batches": batches, "warmup": warmup, "runs": runs,
                                    "min_seconds": min_seconds, "data": data,
                                    "keras": keras_runs, "pinned_cpus": pin})
    inputs: dict[str, tuple] = {}
    total, step = len(artifacts) * len(delegates) * len(threads) * len(batches), 0
    measured: list[tuple] = []  # (X, y) of each artifact, for the Keras baseline
    for art in artifacts:
        try:
            manifest, _ = load_manifest(art)
            if manifest.task == "beat" and len(manifest.inputs) == 1:
                spec = manifest.signal.window
                key = json.dumps([spec.to_dict(), len(manifest.labels)], sort_keys=True)
                if key not in inputs:
                    inputs[key] = bench_inputs(spec, data, n_labels=len(manifest.labels))
                X, y, order = inputs[key]
                y = y if data else None
            else:
                X, y, order = task_inputs(manifest, data, Path(art))
            if not len(X[0] if isinstance(X, list | tuple) else X):
                raise ValueError(f"no windows to time in {data or 'the held-out inputs'}")
            measured.append((X, y))
        except (ManifestError, KeyError, ValueError) as exc:
            res.rows.append(BenchRow(str(art), Path(art).name, "-", 0, 0, FAIL, str(exc)))
            continue
        for d in delegates:
            for th in threads:
                for b in batches:
                    if progress is not None:
                        progress(step, total, f"{Path(art).name} {d} threads {th} batch {b}")
                    step += 1
                    res.rows.append(bench_one(Path(art), d, th, b, X, y, warmup, runs,
                                              min_seconds, backend, max_drop, order))
    if keras_runs:
        if "keras" not in BASELINES:
            raise ValueError("--keras needs the training side (pip install 'vitaledge[train]')")
        if not measured:
            raise ValueError("--keras needs at least one artifact to take the inputs from")
        baseline = []
        for run in keras_runs:  # each on the inputs of an artifact its model takes
            try:
                baseline += BASELINES["keras"](run, measured, threads, warmup, runs,
                                               min_seconds)
            except (ValueError, OSError) as exc:  # that run's row fails, not the bench
                baseline.append(BenchRow(str(run), f"{Path(run).name}/keras", "tf", 0, 0,
                                         FAIL, str(exc)))
        res.rows[:0] = baseline
    return res


#: (field, header, width, number format); text columns are left-aligned.
COLUMNS = [("variant", "variant", 44, ""), ("status", "status", 7, ""),
           ("delegate", "delegate", 9, ""), ("threads", "thr", 4, "d"),
           ("batch", "batch", 6, "d"), ("size_bytes", "bytes", 9, "d"),
           ("load_ms", "load ms", 9, ".1f"), ("p50_ms", "p50 ms", 9, ".3f"),
           ("p90_ms", "p90 ms", 9, ".3f"), ("p99_ms", "p99 ms", 9, ".3f"),
           ("windows_per_s", "win/s", 9, ".0f"), ("accuracy", "accuracy", 9, ".4f"),
           ("macro_f1", "macro F1", 9, ".4f")]


def _cell(value, width: int, fmt: str) -> str:
    if not fmt:
        return f"{value!s:<{width}}"
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"


def format_table(res: dict) -> str:
    """Console table of a bench result (a dict as saved in bench.json)."""
    lines = ["".join(f"{h:<{w}}" if not f else f"{h:>{w}}" for _, h, w, f in COLUMNS)]
    for r in res["rows"]:
        if r["status"] == FAIL:
            lines.append(f"{r['variant']:<38}{r['status']:<7}{' '.join(r['error'].split())}")
            continue
        lines.append("".join(_cell(r.get(k), w, f) for k, _, w, f in COLUMNS)
                     + ("  (noisy: wide spread)" if r.get("noisy") else ""))
    lines.append("\n" + _footer(res["environment"]))
    return "\n".join(lines)


def _footer(env: dict) -> str:
    """The machine a result was measured on, under both tables."""
    return (f"{env['cpu']} · {env['cores']} cores · {_features(env)} · "
            f"{env['backend']} {env['backend_version']} · numpy {env['numpy']}")


def _features(env: dict) -> str:
    """The footer's instruction-set part; results saved before it was recorded say so."""
    if "cpu_features" not in env:
        return "CPU features not recorded"
    return " ".join(env["cpu_features"]) or "no AVX2/AVX-512/AMX or Arm dot-product units"


def format_markdown(res: dict) -> str:
    """The same table as Markdown, for READMEs."""
    out = ["| " + " | ".join(h for _, h, _, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in res["rows"]:
        if r["status"] == FAIL:  # its reason, as the console table gives it: no figures
            reason = " ".join(str(r.get("error") or "").split()).replace("|", "\\|")
            head = [_cell(r.get(k), 0, f).strip() for k, _, _, f in COLUMNS[:5]]
            out.append("| " + " | ".join(head + [reason]) + " |" + " |" * (len(COLUMNS) - 6))
            continue
        out.append("| " + " | ".join(_cell(r.get(k), 0, f).strip() for k, _, _, f in COLUMNS)
                   + " |" + (" (noisy: wide spread)" if r.get("noisy") else ""))
    out.append("\n" + _footer(res["environment"]))
    return "\n".join(out)


#: What the tables' footers read of a result's ``environment``, and its types
#: (``cpu_features``, a list of names, is absent from results saved before it was recorded).
ENV_FIELDS = {"cpu": (str,), "cores": (int, type(None)), "backend": (str,),
              "backend_version": (str,), "numpy": (str,)}


def validate(res: dict, where: str = "bench result") -> None:
    """Raise ValueError unless ``res`` is a bench result of this schema version, every
    field of the type the tables read; the message starts with ``where`` (the file)."""
    if not isinstance(res, dict):
        raise ValueError(f"{where}: not a JSON object (got {type(res).__name__})")
    if res.get("schema") != SCHEMA:
        raise ValueError(f"{where}: not a {SCHEMA} result (schema={res.get('schema')!r})")
    for k in ("environment", "settings", "rows"):
        if k not in res:
            raise ValueError(f"{where}: missing {k!r}")
    for k, kind in (("environment", dict), ("settings", dict), ("rows", list)):
        if not isinstance(res[k], kind):
            raise ValueError(f"{where}: {k!r} is {type(res[k]).__name__}, expected "
                             f"{'an object' if kind is dict else 'a list'}")
    env = res["environment"]
    for k, types in ENV_FIELDS.items():
        if not isinstance(env.get(k), types) or isinstance(env.get(k), bool):
            raise ValueError(f"{where}: environment.{k} is {env.get(k)!r}, expected "
                             f"{' or '.join(t.__name__ for t in types)}")
    feats = env.get("cpu_features", [])
    if not (isinstance(feats, list) and all(isinstance(f, str) for f in feats)):
        raise ValueError(f"{where}: environment.cpu_features is {feats!r}, expected a list "
                         "of names")
    fields_ = set(BenchRow.__dataclass_fields__)
    for i, r in enumerate(res["rows"]):
        if not isinstance(r, dict):
            raise ValueError(f"{where}: row {i} is {type(r).__name__}, expected an object")
        if set(r) != fields_:
            raise ValueError(f"{where}: row {i}: fields differ from the schema "
                             f"(unknown {sorted(set(r) - fields_)}, missing "
                             f"{sorted(fields_ - set(r))})")
        try:
            read_fields(BenchRow, r, f"row {i}")
        except SpecError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if r["status"] not in (OK, DROP, FAIL):
            raise ValueError(f"{where}: row {i}: status {r['status']!r}, expected one of "
                             f"{[OK, DROP, FAIL]}")
        neg = next((k for k in BenchRow.__dataclass_fields__
                    if k.endswith("_ms") and isinstance(r[k], int | float) and r[k] < 0), None)
        if neg is not None:  # a time is never negative: a hand-edited or foreign file
            raise ValueError(f"{where}: row {i}: {neg} is {r[neg]!r}, expected >= 0")
    seen: dict = {}
    for i, r in enumerate(res["rows"]):  # one artifact timed twice alike: a hand-made file
        first = seen.setdefault((r["artifact"], *row_key(r)[1:]), i)
        if first != i:
            raise ValueError(f"{where}: rows {first} and {i} are the same row ({r['artifact']}, "
                             f"{r['delegate']}, {r['threads']} threads, batch {r['batch']})")


def row_key(row: dict) -> tuple:
    """What ``compare`` matches rows of several results on (the variant, not the path:
    the machines' paths differ)."""
    return row["variant"], row["delegate"], row["threads"], row["batch"]


#: The tables ``save`` writes (beside the figures of :data:`~.plots.PLOTS`).
TABLES = ("bench.json", "bench.csv", "bench.md", "bench.txt")


def written_before(out: Path) -> Path | None:
    """The first file in ``out`` a bench would write over (its tables or figures)."""
    from vitaledge.device.bench.plots import PLOTS

    return next((out / n for n in (*TABLES, *PLOTS) if (out / n).exists()), None)


def save(res: BenchResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    d = res.to_dict()
    (out / "bench.json").write_text(json.dumps(d, indent=2) + "\n")
    with (out / "bench.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(BenchRow.__dataclass_fields__))
        w.writeheader()
        w.writerows(d["rows"])
    (out / "bench.md").write_text(format_markdown(d) + "\n")
    (out / "bench.txt").write_text(format_table(d) + "\n")
    from vitaledge.device.bench.plots import PLOTS, have_matplotlib, save_plots

    for name in PLOTS:  # an earlier bench's figure must not stand beside this one's tables
        (out / name).unlink(missing_ok=True)
    if not save_plots(d, out):  # no matplotlib, or no row measured (all failed): say which
        print("plots skipped: " + ("no row was measured" if have_matplotlib() else
                                   "matplotlib is not installed (pip install matplotlib)"))


def result_names(paths: list[str]) -> list[str]:
    """A column name per bench.json path: its folder's name, with as many parent folders as
    it takes to tell apart results whose folders share a name (``pi/int8``, ``x86/int8``)."""
    parts = [Path(p).resolve().parent.parts or (Path(p).stem,) for p in paths]
    names = []
    for i, pp in enumerate(parts):
        depth = 1
        while depth < len(pp) and any(pp[-depth:] == q[-depth:] for j, q in enumerate(parts)
                                      if j != i):
            depth += 1
        names.append("/".join(pp[-depth:]).lstrip("/") or Path(paths[i]).stem)
    return names


def compare(results: list[dict], names: list[str]) -> str:
    """p50 latency per (variant, delegate, threads, batch), one column per result file;
    columns as wide as their longest name or variant."""
    for r in results:
        validate(r)
    keys = []
    for r in results:
        for row in r["rows"]:
            k = row_key(row)
            if k not in keys:
                keys.append(k)
    vw = max([len("variant"), *(len(str(k[0])) for k in keys)]) + 2
    dw = max([len("deleg"), *(len(str(k[1])) for k in keys)]) + 2
    cw = [max(10, len(n)) + 2 for n in names]
    head = f"{'variant':<{vw}}{'deleg':<{dw}}{'thr':>4}{'bat':>4}" + "".join(
        f"{n:>{w}}" for n, w in zip(names, cw, strict=True))
    lines = [head]
    for k in keys:
        cells = []
        for r, w in zip(results, cw, strict=True):
            row = next((x for x in r["rows"] if row_key(x) == k), None)
            cells.append(f"{'-' if row is None or row['status'] == FAIL else row['p50_ms']:>{w}}")
        lines.append(f"{k[0]:<{vw}}{k[1]:<{dw}}{k[2]:>4}{k[3]:>4}" + "".join(cells))
    shared = sum(1 for k in keys if sum(any(row_key(x) == k for x in r["rows"])
                                         for r in results) > 1)
    if not shared and len(results) > 1:
        lines.append("note: no row is in more than one file: rows are matched on the "
                     "variant as each bench named it (its path), delegate, threads, batch")
    for n, r in zip(names, results, strict=True):  # two artifacts of one folder name
        twice = [k for k in keys if sum(row_key(x) == k for x in r["rows"]) > 1]
        if twice:
            lines.append(f"note: {n} holds {len(twice)} row(s) of artifacts named alike "
                         f"({twice[0][0]}): shown is the first of each")
    lines.append("")
    for n, r in zip(names, results, strict=True):
        e = r["environment"]
        lines.append(f"{n}: {e['cpu']}, {e['cores']} cores, {_features(e)}, {e['backend']} "
                     f"{e['backend_version']}")
    return "\n".join(lines)
