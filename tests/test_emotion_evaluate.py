"""``vitaledge evaluate`` on emotion-ecg and emotion-multimodal runs: the run's held-out
inputs give the numbers training reported; an emotion-ecg run trained on a data set's
files is scored again from those files (``--data``, subjects chosen with ``--actors``);
runs trained on synthetic data refuse ``--data`` in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.io import savemat

from vitaledge.cli import main
from vitaledge.firmware_sim.patients import emotion as se

FS = 128.0
#: what a re-evaluation must give as training reported it
SAME = ("labels", "accuracy", "uar", "macro_f1", "per_class", "confusion_matrix", "n_test")


def _cell(items) -> np.ndarray:
    c = np.empty((1, len(items)), dtype=object)
    for i, it in enumerate(items):
        c[0, i] = it
    return c


def _write_amigos(d, subjects=(1, 2, 3, 4), seconds=61.0):
    """AMIGOS-layout files: per participant one trial of each quadrant, synthetic ECG in
    column 15 (1-based) of samples x 17, self-assessed arousal and valence first."""
    d.mkdir()
    for pid in subjects:
        person = se.draw_subject(pid)
        trials, labels = [], []
        for k, q in enumerate(se.QUADRANTS):
            x = np.zeros((int(seconds * FS), 17))
            x[:, 14] = se.emotion_ecg(seconds, FS, se.QUADRANT_PROFILES[q], person,
                                      100 * pid + k)[: len(x)]
            trials.append(x)
            arousal, valence = (7.0 if q.endswith("HA") else 3.0), (7.0 if "HV" in q else 3.0)
            labels.append(np.array([[arousal, valence] + [1.0] * 10]))
        savemat(d / f"Data_Preprocessed_P{pid:02d}.mat",
                {"joined_data": _cell(trials), "labels_selfassessment": _cell(labels)})
    return d


def _train(args):
    from vitaledge.train.cli import train_group

    res = CliRunner().invoke(train_group, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny runs (one or two epochs: the numbers need not be good, only reproduced): an
    emotion-ecg run on AMIGOS-layout files held out by subject, one on synthetic trials,
    and a multimodal one."""
    root = tmp_path_factory.mktemp("emoeval")
    amigos = _write_amigos(root / "amigos")
    small = ["--arch", "cnnlstm_ecg_small", "--folds", "0", "--test-fraction", "0.25",
             "--epochs", "1", "--batch-size", "8"]
    _train(["emotion-ecg", "--dataset", "amigos", "--data", amigos, "--group", "subject",
            *small, "--out", root / "ecg"])
    _train(["emotion-ecg", "--dataset", "synth", "--synth-subjects", "4", "--synth-trials",
            "1", "--synth-seconds", "61", *small, "--out", root / "ecg-synth"])
    _train(["emotion-multimodal", "--synth-subjects", "2", "--synth-per-class", "4",
            "--window-seconds", "20", "--epochs", "2", "--patience", "2", "--no-baselines",
            "--out", root / "mm"])
    return root


def evaluate(tmp_path, *args) -> dict:
    out = tmp_path / "m.json"
    res = CliRunner().invoke(main, ["evaluate", *map(str, args), "--json", str(out)],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "UAR" in res.output
    return json.loads(out.read_text())


def one_error(*args) -> str:
    """The one ``Error:`` line of a refused ``vitaledge evaluate`` (non-zero exit)."""
    res = CliRunner().invoke(main, ["evaluate", *map(str, args)])
    assert res.exit_code != 0 and isinstance(res.exception, SystemExit), res.output
    lines = [x for x in res.output.splitlines()
             if x.strip() and not x.startswith(("Usage:", "Try '"))]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


def _same(got: dict, trained: dict) -> None:
    for key in SAME:
        assert got[key] == trained[key], key


def test_emotion_ecg_evaluate_reproduces_training_from_the_run_and_the_files(runs, tmp_path):
    run = runs / "ecg"
    trained = json.loads((run / "metrics.json").read_text())
    test_subjects = trained["data"]["test_subjects"]
    assert len(test_subjects) == 1 and trained["n_test"] == 8  # 4 trials x 2 segments
    _same(evaluate(tmp_path, run), trained)                    # data.npz
    _same(evaluate(tmp_path, run / "model.keras"), trained)
    # the held-out subject's segments made again from the .mat files
    again = evaluate(tmp_path, run, "--data", runs / "amigos", "--actors", ",".join(test_subjects))
    _same(again, trained)
    assert again["data"]["subjects"] == test_subjects
    # every subject: every segment of the data set
    every = evaluate(tmp_path, run, "--data", runs / "amigos")
    assert every["n_test"] == trained["data"]["inputs"] == 32
    assert every["data"]["subjects"] == ["P01", "P02", "P03", "P04"]


def test_multimodal_evaluate_reproduces_training(runs, tmp_path):
    run = runs / "mm"
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["n_test"] == 6
    _same(evaluate(tmp_path, run), trained)
    _same(evaluate(tmp_path, run / "model.keras"), trained)


def test_bad_data_is_one_line_and_a_non_zero_exit(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    ecg, amigos = runs / "ecg", runs / "amigos"
    assert "no Data_Preprocessed_Pxx.mat files (AMIGOS)" in one_error(ecg, "--data", empty)
    assert "actors ['P09'] not in" in one_error(ecg, "--data", amigos, "--actors", "P09")
    assert "subjects there: P01, P02, P03, P04" in one_error(ecg, "--data", amigos,
                                                             "--actors", "P09")
    assert "does not exist" in one_error(ecg, "--data", tmp_path / "nowhere")
    assert "give --data" in one_error(ecg, "--actors", "P01")
    assert "emotion-ecg runs do not take --split" in one_error(ecg, "--split", "all")
    assert "emotion-ecg runs do not take --no-cache" in one_error(ecg, "--no-cache")
    # synthetic training data has no directory: --data is refused, not ignored
    assert "trained on synthetic trials" in one_error(runs / "ecg-synth", "--data", amigos)
    assert "trained on synthetic windows" in one_error(runs / "mm", "--data", amigos)
    assert "emotion-multimodal runs do not take --actors" in one_error(runs / "mm",
                                                                       "--actors", "s01")


def test_a_run_or_artifact_whose_labels_or_inputs_are_not_the_models_is_one_line(runs,
                                                                                tmp_path):
    """A config.json with a fifth label scored a made-up class, exit 0; an artifact whose
    manifest lists its classes in another order was reported in the run's order (the
    device names them from the manifest); inputs of another shape were 24 lines of Keras
    traceback."""
    import shutil

    import numpy as np

    from vitaledge.convert.pipeline import ConvertOptions, convert_run

    run = tmp_path / "ecg"
    shutil.copytree(runs / "ecg-synth", run)
    cfg = json.loads((run / "config.json").read_text())
    art = tmp_path / "art"
    convert_run(run, art, ConvertOptions(targets=["cpu"], quant="none"))
    m = json.loads((art / "cpu-fp32" / "manifest.json").read_text())
    m["labels"] = m["labels"][::-1]
    (art / "cpu-fp32" / "manifest.json").write_text(json.dumps(m))
    assert f"its manifest's labels {m['labels']} are not its source run's" in one_error(
        art / "cpu-fp32")
    # the source run's config.json says another task than the manifest (was a KeyError)
    import hashlib

    m["labels"] = m["labels"][::-1]
    (run / "config.json").write_text(json.dumps({**cfg, "task": "beat"}))
    m["source_run"]["config_sha256"] = hashlib.sha256(
        (run / "config.json").read_bytes()).hexdigest()
    (art / "cpu-fp32" / "manifest.json").write_text(json.dumps(m))
    line = one_error(art / "cpu-fp32", "--data", str(tmp_path))
    assert f"{run / 'config.json'}: its task is beat, the model's manifest says emotion-ecg" \
        in line, line

    (run / "config.json").write_text(json.dumps({**cfg, "labels": [*cfg["labels"], "X"]}))
    line = one_error(run)
    assert f"{run / 'config.json'}: labels" in line and "are 5; the model gives 4 outputs" \
        in line
    with pytest.raises(ValueError, match="are 5; the model gives 4 outputs"):
        convert_run(run, tmp_path / "art2", ConvertOptions(targets=["cpu"], quant="none"))
    assert not (tmp_path / "art2").exists()

    (run / "config.json").write_text(json.dumps(cfg))
    with np.load(run / "data.npz") as z:
        data = {k: z[k] for k in z.files}
    data["test_ecg"] = data["test_ecg"][:, :, :64]
    np.savez(run / "data.npz", **data)
    line = one_error(run)
    assert f"{run / 'data.npz'}: ecg inputs are [48, 64, 1], the model takes [48, 128, 1]" \
        in line, line


def test_every_task_has_its_entry_in_the_training_tables():
    """``evaluate`` dispatches a run by its task's EVALUATORS entry (an emotion task's made
    from its EMOTION_DATA entry), and takes the options it accepts from it: a manifest task
    with no entry would fail there (before the registry, a task missing from a tuple was
    scored down the beat path). Every task has an architecture to train (docs/extend.md,
    a model task)."""
    from vitaledge.convert.targets import FAMILIES
    from vitaledge.device.model.manifest import TASKS
    from vitaledge.train import zoo
    from vitaledge.train.emotion_evaluate import EMOTION_DATA
    from vitaledge.train.evaluate import BEAT_EVALUATE_OPTIONS
    from vitaledge.train.evaluators import EVALUATORS

    assert all(zoo.names(task) for task in TASKS)
    assert set(EVALUATORS) == set(TASKS)  # evaluate looks every run's task up there

    assert set(EMOTION_DATA) == set(TASKS) - {"beat"} == set(FAMILIES["emotion"].tasks)
    offered = {p.opts[0] for p in main.commands["evaluate"].params if p.opts[0].startswith("--")}
    for kind in EMOTION_DATA.values():
        assert set(kind.options) <= offered and "--data" not in kind.options
        assert (kind.read is None) == bool(kind.why_none)
    assert set(BEAT_EVALUATE_OPTIONS) <= offered
    assert all(set(e.options) <= offered for e in EVALUATORS.values())


def test_a_source_config_that_is_not_an_emotion_runs_is_one_error(runs, tmp_path):
    """evaluate_emotion reads the run's config.json itself: a task that is not an emotion
    task, labels that are not a list of names or a missing signal spec are named (a
    KeyError, or a sentence built from a TypeError's text, before)."""
    import shutil

    from vitaledge.train.emotion_evaluate import evaluate_emotion

    run = tmp_path / "ecg"
    shutil.copytree(runs / "ecg-synth", run)
    cfg = json.loads((run / "config.json").read_text())
    for change, words in [({"task": "beat"}, "its task is beat, not an emotion task"),
                          ({"labels": 5}, "labels must be the list of the run's class names, "
                                          "got 5"),
                          ({"labels": None}, "got null"),
                          ({"signal": None}, "signal must be the run's signal spec")]:
        (run / "config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(ValueError) as exc:
            evaluate_emotion(run)
        assert str(exc.value).startswith(f"{run / 'config.json'}: ") and words in str(
            exc.value), exc.value
