"""TFLite-Micro on a tiny Keras model converted here, float32 and full int8, checked against LiteRT."""

from __future__ import annotations

import numpy as np
import pytest

from xpubench.backends import get_backend

rng = np.random.default_rng(5)
X = rng.random((40, 8, 8, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory):
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )
    folder = tmp_path_factory.mktemp("tflm")
    fp32 = folder / "tiny.fp32.tflite"
    fp32.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([X[i : i + 1]] for i in range(len(X)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    int8 = folder / "tiny.int8.tflite"
    int8.write_bytes(converter.convert())
    return {"fp32": fp32, "int8": int8}


def litert_outputs(path, x: np.ndarray) -> np.ndarray:
    """LiteRT's answer, one sample at a time, quantising and dequantising as the model says."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    results = []
    for sample in x:
        sample = sample[None]
        if inp["dtype"] == np.int8:
            scale, zero = inp["quantization"]
            sample = np.clip(np.rint(sample / scale) + zero, -128, 127).astype(np.int8)
        interpreter.set_tensor(inp["index"], sample)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] == np.int8:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(y)
    return np.concatenate(results)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_tflm_matches_litert(tflite_files, precision):
    cls = get_backend("tflm")
    assert cls.unavailable_reason("mcu-emulated", precision) is None
    assert cls.artifact_kind(precision) == f"tflite:{precision}"
    path = tflite_files[precision]
    backend = cls(path, device="mcu-emulated", precision=precision)
    (spec,) = backend.inputs
    assert spec.shape == (None, 8, 8, 1) and spec.dtype == np.float32

    (ours,) = backend.predict([X])
    assert ours.dtype == np.float32 and ours.shape == (len(X), 5)
    theirs = litert_outputs(path, X)
    if precision == "fp32":
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    else:
        step = backend._out[0]["quantization_parameters"]["scales"][0]
        assert np.abs(ours - theirs).max() <= 1.01 * step  # at most one quantisation step apart
        assert np.abs(ours - theirs).max() < 0.05
    assert backend.details()["io_types"] == ["float32" if precision == "fp32" else "int8"]
    backend.close()


@pytest.mark.slow
def test_tflm_batches_one_sample_at_a_time_and_reports_its_arena(tflite_files):
    backend = get_backend("tflm")(tflite_files["fp32"], device="mcu-emulated")
    (whole,) = backend.fetch(backend.infer(backend.prepare([X[:3]])))
    singles = np.concatenate([backend.predict([X[i : i + 1]])[0] for i in range(3)])
    np.testing.assert_array_equal(whole, singles)
    assert not np.allclose(whole[0], whole[1])  # each sample's own answer, not the first one's repeated

    details = backend.details()
    assert details["samples_per_invoke"] == 1
    assert 0 < details["arena_bytes"] <= details["arena_size"]
    assert details["flash_bytes"] == tflite_files["fp32"].stat().st_size == backend.model_bytes()
    with pytest.raises(ValueError, match="shape"):
        backend.prepare([X[:, :4]])


def test_tflm_says_where_it_runs():
    cls = get_backend("tflm")
    assert cls.emulated
    assert "mcu-emulated" in cls.unavailable_reason("cpu", "fp32")
    assert "fp16" in cls.unavailable_reason("mcu-emulated", "fp16")


def test_tflm_grows_a_short_arena(tflite_files, monkeypatch):
    """A first arena far too small must be doubled until the model fits, not fail."""
    from xpubench.backends import tflm

    needed = tflm.TFLMBackend(tflite_files["int8"], precision="int8").details()["arena_bytes"]
    first = max(1024, needed // 2)  # short, yet not below ~0.5 KiB, where TFLM itself crashes
    monkeypatch.setattr(tflm, "ARENA_MIN", first)
    monkeypatch.setattr(tflm, "ARENA_FACTOR", 0)
    backend = tflm.TFLMBackend(tflite_files["int8"], precision="int8")
    assert needed > first, needed
    assert backend.arena_size > first and 0 < backend.details()["arena_bytes"] <= backend.arena_size
    assert backend.predict([X[:2]])[0].shape == (2, 5)
