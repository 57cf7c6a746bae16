"""``vitaledge demo`` (``make demo``): the main job end to end on built-in synthetic data
(no download).

One readable pipeline, each step the same library call the CLI makes:
synthetic WFDB records -> train a beat model -> evaluate it on held-out beats -> convert to
TFLite (fp32 and int8, each unpruned and 50%-pruned), each verified through the
TensorFlow-free device runtime -> replay an unseen synthetic patient through the on-device
daemon with the int8 model -> bench every artifact -> summary tables of accuracy, size and
latency.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from vitaledge.device.cli_shared import FiniteRange, deprecated_alias


def step(title: str) -> float:
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}", flush=True)
    return time.time()


def run(out: Path, minutes: float = 5.0, n_records: int = 8, epochs: int = 10,
        arch: str = "resnet1d", seed: int = 0) -> dict:
    from vitaledge.firmware_sim.patients.ecg import synth_database

    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    t = step(f"1. synthetic ECG: {n_records} records x {minutes} min (WFDB + .atr)")
    data_dir = out / "data"
    paths = synth_database(data_dir, n_records=n_records, minutes=minutes, seed=seed)
    print(f"wrote {', '.join(p.name for p in paths)} to {data_dir}")
    timings["synth"] = time.time() - t

    t = step(f"2. train {arch} (beat split, {epochs} epochs)")
    from vitaledge.device.dsp.windows import WindowSpec
    from vitaledge.train.config import BeatTrainConfig
    from vitaledge.train.fit import train_beat

    run_dir = out / f"run-{arch}"
    cfg = BeatTrainConfig(arch=arch, records=str(data_dir), window=WindowSpec.kachuee(),
                          split="beat", epochs=epochs, patience=epochs, seed=seed)
    metrics = train_beat(cfg, run_dir)
    timings["train"] = time.time() - t

    t = step("3. evaluate the saved model again from its run directory")
    from vitaledge.train.evaluate import evaluate_model

    again, text = evaluate_model(run_dir)
    print(text)
    timings["evaluate"] = time.time() - t

    t = step("4. convert: fp32 and int8, unpruned and 50%-pruned, for the CPU (XNNPACK)")
    from vitaledge.convert.pipeline import ConvertOptions, convert_run, table

    art_dir = out / "artifacts"
    results = convert_run(run_dir, art_dir, ConvertOptions(
        targets=["cpu"], sparsities=[0.0, 0.5], prune_epochs=2))
    timings["convert"] = time.time() - t

    t = step("5. daemon: replay a new synthetic patient through the int8 model (no TF)")
    from vitaledge.device.eval.score_events import format_score, load_events, score_events
    from vitaledge.device.stream.daemon import Daemon
    from vitaledge.device.stream.daemon_config import DaemonConfig
    from vitaledge.firmware_sim.patients.ecg import synth_record, write_wfdb

    replay = write_wfdb(synth_record(minutes=3.0, seed=seed + 1000, name="patient-x"),
                        out / "replay")
    events_path = out / "events.jsonl"
    events_path.unlink(missing_ok=True)
    summary = Daemon(DaemonConfig(model=str(art_dir / "cpu-int8"), source=f"replay:{replay}",
                                  out=[str(events_path)])).run(install_signals=False)
    scored = score_events(load_events(events_path), replay)
    print("(the daemon's rss_mb above is this demo's process, which holds TensorFlow from "
          "training; `vitaledge device run` imports none)")
    print(format_score(scored))
    from vitaledge.device.eval.review import write_review

    (out / "replay_score.json").write_text(json.dumps(
        {"record": str(replay), "events": str(events_path), "score": scored,
         "daemon": summary}, indent=2, default=str) + "\n")
    write_review(events_path, replay, out / "review.html")
    print(f"score in {out / 'replay_score.json'}; the strip with every beat in "
          f"{out / 'review.html'} (open it in a browser)")
    timings["daemon"] = time.time() - t

    t = step("6. bench: latency per artifact, 1 thread, XNNPACK, held-out beats")
    from vitaledge.device.bench.latency import format_table as bench_table
    from vitaledge.device.bench.latency import run_bench, save

    bench = run_bench([r.path for r in results], threads=[1], delegates=["xnnpack"],
                      batches=[1], warmup=20, min_seconds=0.5,
                      data=str(art_dir / "heldout.npz"))
    save(bench, out / "bench")
    print(f"{len(bench.rows)} artifact rows measured; the table is in the summary below")
    timings["bench"] = time.time() - t

    step("summary")
    keras_ref = {"accuracy": again["accuracy"], "macro_f1": again["macro"]["f1"]}
    print(table(results, keras_ref))
    print(f"\ndaemon replay of {replay.name}: {summary['signal_seconds']} s of ECG in "
          f"{summary['wall_seconds']} s ({summary['realtime_factor']}x real time), "
          f"{summary['events_this_run'].get('beat', 0)} beat events, "
          f"detection Se {100 * scored['sensitivity']:.2f}% "
          f"+P {100 * scored['ppv']:.2f}%, class accuracy "
          f"{scored['classification']['accuracy']:.4f}; events in {events_path}")
    print("\n" + bench_table(bench.to_dict()))
    print("\nstep times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"outputs in {out}/")
    return {"metrics": metrics, "evaluate": again, "timings": timings}


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="demo-out", show_default=True,
              help="Output directory (data, run, artifacts, events, bench).")
@click.option("--minutes", type=FiniteRange(1, 600), default=5.0, show_default=True,
              help="Length of each synthetic record.")
@click.option("--n-records", type=click.IntRange(1, 1000), default=8, show_default=True,
              help="How many synthetic records (patients) to train and test on.")
@deprecated_alias("--records", "--n-records", "n_records", type=click.IntRange(1, 1000))
@click.option("--epochs", type=click.IntRange(1, 10_000), default=10, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def demo_cmd(out, minutes, n_records, epochs, seed) -> None:
    """Synthetic ECG -> train -> evaluate -> convert (fp32 and int8, unpruned and pruned) ->
    daemon replay -> bench, with summary tables (no download; about 1-2 minutes on two cores)."""
    from vitaledge.train.run_dir import check_folder_path

    check_folder_path(Path(out))
    try:
        run(Path(out), minutes, n_records, epochs, seed=seed)
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:  # a folder that cannot be made or written, a file unread
        raise click.ClickException(f"{exc.filename or out}: {exc.strerror or exc}") from exc


if __name__ == "__main__":
    demo_cmd()
