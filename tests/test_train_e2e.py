"""A short training run end to end on synthetic records: the run directory, its metrics,
and evaluation reproducing them from disk."""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_run_directory_has_everything(tiny_run):
    run, _ = tiny_run
    for f in ("model.keras", "config.json", "splits.npz", "history.csv", "metrics.json",
              "classification_report.txt", "training_history.png", "confusion_matrix.png",
              "confusion_matrix_normalized.png"):
        assert (run / f).stat().st_size > 0, f
    assert any((run / "logs").rglob("events.out.tfevents*"))
    history = (run / "history.csv").read_text().splitlines()
    assert "val_macro_f1" in history[0] and len(history) == 26


def test_model_trained_on_synthetic_beats_classifies_held_out_synthetic_beats(tiny_run):
    _, m = tiny_run
    assert m["parameters"] <= 20_000
    assert m["evaluated_on"] == "test"
    assert sum(pc["support"] for pc in m["per_class"].values()) == m["n"]
    assert all(pc["support"] > 0 for pc in m["per_class"].values())
    assert m["macro"]["f1"] >= 0.95, json.dumps(m["per_class"], indent=1)


def test_evaluate_reproduces_the_run_metrics_from_disk(tiny_run):
    from vitaledge.train.evaluate import evaluate_model

    run, m = tiny_run
    again, text = evaluate_model(run)
    assert again["n"] == m["n"]
    assert again["confusion_matrix"] == m["confusion_matrix"]
    assert "macro avg" in text


def test_evaluate_refuses_a_changed_dataset(tiny_run, tmp_path):
    from vitaledge.train.evaluate import evaluate_model

    run, _ = tiny_run
    ids = np.load(run / "splits.npz")
    arrays = {k: ids[k] for k in ids.files}
    arrays["test_sample"] = arrays["test_sample"] + 1
    np.savez(tmp_path / "splits.npz", **arrays)
    for f in ("config.json", "model.keras"):
        (tmp_path / f).write_bytes((run / f).read_bytes())
    with pytest.raises(ValueError, match="differ from the ones this run was trained on"):
        evaluate_model(tmp_path)


def test_patient_folds_report_every_row_on_the_same_beats(synth_dir, tmp_path):
    """``train beat --split patients --folds 2`` on four synthetic patients: each fold row's
    accuracy is its EC57 report's (beats whose reference is Q left out, as the class columns
    and the pooled row), so the pooled accuracy, a weighted mean of the folds', lies between
    them; each patient is tested once; ``convert`` on the K-fold directory names a fold."""
    from click.testing import CliRunner

    from vitaledge.cli import main

    run = tmp_path / "folds"
    r = CliRunner().invoke(main, ["train", "beat", "--data", str(synth_dir), "--split",
                                  "patients", "--folds", "2", "--arch", "tiny", "--epochs",
                                  "2", "--patience", "2", "--out", str(run)])
    assert r.exit_code == 0, r.output
    summary = json.loads((run / "folds.json").read_text())
    folds = summary["folds"]
    tested = [p for f in folds for p in f["test_records"]]
    assert sorted(tested) == sorted(p.stem for p in synth_dir.glob("*.hea"))
    for k, f in enumerate(folds, start=1):
        gross = json.loads((run / f"fold-{k}" / "ec57.json").read_text())["gross"]
        assert f["accuracy"] == gross["accuracy"] and gross["q_reference"]["beats"] > 0
    accs = [f["accuracy"] for f in folds]
    assert min(accs) <= summary["pooled"]["accuracy"] <= max(accs), (accs, summary["pooled"])
    r = CliRunner().invoke(main, ["convert", str(run), "--target", "cpu", "--out",
                                  str(tmp_path / "art")])
    assert r.exit_code != 0 and "fold-1" in r.output and "Traceback" not in r.output, r.output
