"""Quantization-aware fine-tuning where tfmot supports the layers.

tfmot's default 8-bit scheme does not annotate Conv1D (or LSTM). Conv1D gets the same
treatment tfmot gives Conv2D — 8-bit symmetric per-tensor weights, moving-average
activation ranges — through a QuantizeConfig supplied here. Models with layers neither
tfmot nor this module can annotate fall back to post-training quantization, with the
reason printed.
"""

from __future__ import annotations

from vitaledge.train.backend import keras


def _conv1d_config():
    import tensorflow_model_optimization as tfmot

    quantizers = tfmot.quantization.keras.quantizers

    class Conv1DQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        def get_weights_and_quantizers(self, layer):
            return [(layer.kernel, quantizers.LastValueQuantizer(
                num_bits=8, symmetric=True, narrow_range=True, per_axis=False))]

        def get_activations_and_quantizers(self, layer):
            return [(layer.activation, quantizers.MovingAverageQuantizer(
                num_bits=8, symmetric=False, narrow_range=False, per_axis=False))]

        def set_quantize_weights(self, layer, quantize_weights):
            layer.kernel = quantize_weights[0]

        def set_quantize_activations(self, layer, quantize_activations):
            layer.activation = quantize_activations[0]

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    return Conv1DQuantizeConfig


def quantization_aware(model: keras.Model, data, epochs: int = 2, batch_size: int = 64,
                       learning_rate: float = 1e-4) -> keras.Model | None:
    """Fine-tune ``model`` with fake quantization; None (PTQ fallback) when not possible."""
    import tensorflow_model_optimization as tfmot

    qk = tfmot.quantization.keras
    cfg_cls = _conv1d_config()

    def annotate(layer):
        if isinstance(layer, keras.layers.Conv1D):
            return qk.quantize_annotate_layer(layer, cfg_cls())
        return qk.quantize_annotate_layer(layer) if _supported(layer) else layer

    try:
        annotated = keras.models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
        with qk.quantize_scope({"Conv1DQuantizeConfig": cfg_cls}):
            qmodel = qk.quantize_apply(annotated)
    except (ValueError, TypeError, RuntimeError) as exc:
        print(f"qat: tfmot cannot quantize this model ({str(exc).splitlines()[0][:200]}); "
              "falling back to post-training quantization")
        return None
    qmodel.compile(optimizer=keras.optimizers.Adam(learning_rate),
                   loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # every named input of a multi-input model (beat, RR features, template), as pruning's
    qmodel.fit(data.X_fit, data.y_fit, validation_data=(data.val.inputs(), data.val.y),
               epochs=epochs, batch_size=batch_size, class_weight=data.class_weight, verbose=2)
    return qmodel


def _supported(layer) -> bool:
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as reg,
    )

    return reg.Default8BitQuantizeRegistry().supports(layer) and not isinstance(
        layer, keras.layers.InputLayer)

