"""Compensated int8 weight rounding (convert/rounding.py) and the least-error input range
(convert/quantize.py): on the converter's grid, closer in output than nearest rounding,
kept by the converter through batch-norm folding, the float weights put back."""

import numpy as np
import pytest

from vitaledge.convert.quantize import clip_to_mse_range, mse_range, to_tflite
from vitaledge.convert.rounding import compensated_weights, gptq_round


def _smooth_inputs(n=4000, d=24, seed=0):
    """Rows like image patches: a large shared level plus small local detail."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, 2, (n, 1)) + rng.normal(0, 0.3, (n, d))


def test_gptq_round_is_on_the_grid_and_closer_in_output_than_nearest():
    rng = np.random.default_rng(1)
    X = _smooth_inputs()
    w = rng.normal(0, 1, (X.shape[1], 6))
    wq = gptq_round(w, X.T @ X / len(X))
    scale = np.abs(w).max(0) / 127
    assert np.allclose(np.abs(wq).max(0), np.abs(w).max(0))  # the converter's scale kept
    steps = wq / scale
    assert np.allclose(steps, np.round(steps), atol=1e-6) and np.abs(steps).max() <= 127 + 1e-9
    nearest = np.round(w / scale) * scale
    err = np.mean((X @ (wq - w)) ** 2)
    assert err < 0.5 * np.mean((X @ (nearest - w)) ** 2)
    w[::3, 0] = 0  # a pruned kernel keeps its zeros
    assert np.all(gptq_round(w, X.T @ X / len(X))[::3, 0] == 0)


@pytest.mark.slow  # one small conversion, a few seconds
def test_int8_conversion_keeps_the_compensated_kernels_and_restores_the_float_ones():
    from ai_edge_litert.interpreter import Interpreter

    from vitaledge.train.backend import keras

    L = keras.layers
    rng = np.random.default_rng(2)
    inp = L.Input((8, 16, 1))
    x = L.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = L.BatchNormalization(name="bn")(x)
    x = L.GlobalAveragePooling2D()(L.ReLU()(x))
    model = keras.Model(inp, L.Dense(3, activation="softmax", name="dense")(x))
    bn = model.get_layer("bn")
    gamma = rng.uniform(0.5, 3, 4) * np.array([1, -1, 1, 1])
    bn.set_weights([gamma, rng.normal(0, 1, 4), rng.normal(0, 1, 4), rng.uniform(0.1, 2, 4)])
    rep = (np.cumsum(rng.normal(0, 1, (32, 8, 16, 1)), axis=2) / 4).astype(np.float32)
    before = [w.copy() for w in model.get_weights()]

    kq = compensated_weights(model, rep)["conv"][0]
    content = to_tflite(model, "int8", rep)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))

    folded = kq * (gamma / np.sqrt(bn.get_weights()[3] + bn.epsilon))  # (3, 3, 1, 4)
    expected = np.round(folded / (np.abs(folded).reshape(-1, 4).max(0) / 127))
    interp = Interpreter(model_content=content)
    kernels = [d for d in interp.get_tensor_details()
               if d["dtype"] == np.int8 and list(d["shape"]) == [4, 3, 3, 1]]
    assert len(kernels) == 1
    got = interp.get_tensor(kernels[0]["index"]).transpose(1, 2, 3, 0)
    assert np.array_equal(got, expected)
    fold = gamma / np.sqrt(bn.get_weights()[3] + bn.epsilon)
    nearest = before[0] * fold
    nearest = np.round(nearest / (np.abs(nearest).reshape(-1, 4).max(0) / 127))
    assert not np.array_equal(expected, nearest)  # not what nearest rounding gives


def test_mse_range_clips_a_long_tail_only():
    rng = np.random.default_rng(3)
    a = rng.laplace(0, 1, 200_000)  # min/max about +-12: most of the steps spent on a few

    def mse(lo, hi):
        step = (hi - lo) / 255
        return np.mean((np.clip(np.round((a - lo) / step), 0, 255) * step + lo - a) ** 2)

    lo, hi = mse_range(a)
    assert a.min() < lo < -4 and 4 < hi < a.max()
    assert np.mean((a < lo) | (a > hi)) <= 2e-3
    assert mse(lo, hi) < 0.9 * mse(a.min(), a.max())
    u = rng.uniform(-1, 1, 100_000)  # no tail: at most a sliver cut
    ulo, uhi = mse_range(u)
    assert ulo < -0.99 and uhi > 0.99
    c = clip_to_mse_range([a.astype(np.float32), u.astype(np.float32)])
    assert np.isclose(c[0].min(), lo) and np.isclose(c[0].max(), hi)
    assert np.isclose(c[1].min(), ulo) and np.isclose(c[1].max(), uhi)


@pytest.mark.slow  # two small conversions
def test_mse_input_range_narrows_the_int8_input_scale():
    from ai_edge_litert.interpreter import Interpreter

    from vitaledge.train.backend import keras

    L = keras.layers
    inp = L.Input((512,))
    model = keras.Model(inp, L.Dense(3, activation="softmax")(L.Dense(8, "relu")(inp)))
    rep = np.random.default_rng(4).laplace(0, 1, (256, 512)).astype(np.float32)

    def input_scale(**kw):
        interp = Interpreter(model_content=to_tflite(model, "int8", rep, **kw))
        return interp.get_input_details()[0]["quantization"][0]

    lo, hi = mse_range(rep)
    assert np.isclose(input_scale(input_range="mse"), (hi - lo) / 255, rtol=1e-3)
    assert input_scale(input_range="mse") < 0.9 * input_scale()
    with pytest.raises(ValueError, match="input range"):
        to_tflite(model, "int8", rep, input_range="p99")
