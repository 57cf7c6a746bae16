"""The model ``evaluate`` scores, whatever the user named: a run directory, its
``model.keras``, or a converted artifact (a directory with ``manifest.json``, or its
``model.tflite``), which runs through the TensorFlow-free device runtime. Beat and emotion
runs resolve it here, once."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from vitaledge.device.model.manifest import Manifest, input_key
from vitaledge.device.model.runtime import Model

from .run_files import check_keras_file, load_keras, source_run


@dataclass
class Predictor:
    """Class probabilities from one model: ``predict(X)`` takes one array or the arrays by
    input name (``BeatSet.inputs()``, an emotion run's inputs). ``run_dir`` is the run
    whose ``config.json`` describes the model; ``manifest`` is the artifact's (None for a
    Keras model)."""

    run_dir: Path
    description: str
    manifest: Manifest | None = None
    runtime: Model | None = field(default=None, repr=False)
    keras_file: Path | None = None

    @cached_property
    def keras_model(self):
        return load_keras(self.keras_file)

    def takes(self) -> dict[str, tuple]:
        """Each input's name and the shape of one input (without the batch axis)."""
        if self.manifest is not None:
            return {input_key(s.name): tuple(s.shape[1:]) for s in self.manifest.inputs}
        model = self.keras_model
        return {n: tuple(t.shape[1:]) for n, t in zip(model.input_names, model.inputs,
                                                      strict=True)}

    def predict(self, X) -> np.ndarray:
        if self.runtime is not None:
            return self.runtime.predict(X)
        from .predict import predict

        return predict(self.keras_model, X)


def resolve_predictor(model_path: Path) -> Predictor:
    """The :class:`Predictor` of ``model_path``; a Keras file that cannot be a model is
    named before any data is read, a converted artifact the runtime refuses too."""
    model_path = Path(model_path)
    artifact = model_path if model_path.is_dir() else model_path.parent
    if (artifact / "manifest.json").exists():
        m = Model(artifact)  # TensorFlow-free; a model it refuses is named
        desc = f"{artifact} ({m.manifest.target} {m.manifest.quantization}, {m.backend.name})"
        return Predictor(source_run(artifact, m.manifest), desc, m.manifest, runtime=m)
    model_file = model_path / "model.keras" if model_path.is_dir() else model_path
    check_keras_file(model_file)
    return Predictor(model_file.parent, str(model_file), keras_file=model_file)
