"""hls4ml on a tiny Keras model (Conv2D + Dense + softmax) compiled here at two fixed-point widths."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from xpubench.backends import get_backend
from xpubench.convert.graph import Artifacts

rng = np.random.default_rng(8)
X = rng.random((24, 6, 6, 1)).astype(np.float32)


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(4)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1), name="pixels"),
            keras.layers.Conv2D(3, 3, activation="relu", name="conv"),
            keras.layers.Flatten(name="flat"),
            keras.layers.Dense(4, activation="softmax", name="scores"),
        ]
    )
    # Larger weights than the initialiser's spread out the logits, so the softmax output is not flat.
    model.set_weights([w * 3 for w in model.get_weights()])
    path = tmp_path_factory.mktemp("hls4ml") / "tiny.keras"
    model.save(path)
    return path, model.predict(X, verbose=0)


@pytest.fixture(scope="module")
def projects(keras_model, tmp_path_factory):
    """Converted through the graph as a sweep would: built in a temporary folder, then moved."""
    path, _ = keras_model
    artifacts = Artifacts({"keras:fp32": path}, tmp_path_factory.mktemp("artifacts"))
    return {p: artifacts.get(f"hls4ml:{p}") for p in ("fixed<16,6>", "fixed<8,3>")}


@pytest.mark.slow
def test_hls4ml_emulation_follows_keras_closely_at_16_bits_and_less_at_8(keras_model, projects):
    _, expected = keras_model
    cls = get_backend("hls4ml")
    errors = {}
    for precision, project in projects.items():
        assert cls.unavailable_reason("fpga-emulated", precision) is None
        backend = cls(project, device="fpga-emulated", precision=precision)
        (spec,) = backend.inputs
        assert spec.shape == (None, 6, 6, 1)
        (out,) = backend.predict([X])
        assert out.dtype == np.float32 and out.shape == expected.shape
        errors[precision] = np.abs(out - expected)
        backend.close()
    # At 16 bits the softmax's lookup tables (1/32 steps of x_max - x) dominate what is left.
    assert errors["fixed<16,6>"].max() < 0.02 and errors["fixed<16,6>"].mean() < 0.003
    assert errors["fixed<8,3>"].mean() > 5 * errors["fixed<16,6>"].mean()
    assert errors["fixed<8,3>"].max() > 0.05


@pytest.mark.slow
def test_hls4ml_project_reloads_anywhere_without_converting(projects, tmp_path):
    project = projects["fixed<16,6>"]
    first = get_backend("hls4ml")(project, device="fpga-emulated")
    (whole,) = first.fetch(first.infer(first.prepare([X[:3]])))
    singles = np.concatenate([first.predict([X[i : i + 1]])[0] for i in range(3)])
    np.testing.assert_array_equal(whole, singles)
    assert not np.allclose(whole[0], whole[1])

    moved = tmp_path / "elsewhere.hls4ml"
    shutil.copytree(project, moved)
    again = get_backend("hls4ml")(moved, device="fpga-emulated")
    np.testing.assert_array_equal(again.predict([X[:3]])[0], whole)

    details = again.details()
    parameters = 3 * 9 + 3 + 4 * 4 * 3 * 4 + 4
    assert details["parameters"] == parameters
    assert details["precision"] == "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
    assert details["io_type"] and details["compile_seconds"] > 0
    assert again.model_bytes() == parameters * 16 // 8
    with pytest.raises(ValueError, match="shape"):
        again.prepare([X[:, :3]])


def test_hls4ml_takes_any_fixed_point_type():
    cls = get_backend("hls4ml")
    assert cls.emulated and cls.precisions == ("fixed<16,6>",)
    assert cls.supports_precision("fixed<8,3>") and cls.supports_precision("fixed<64,64>")
    for wrong in ("fixed<70,3>", "fixed<4,6>", "fixed<8,0>", "fp32", "ap_fixed<16,6>"):
        assert not cls.supports_precision(wrong)
    assert "1 <= I <= W <= 64" in cls.unavailable_reason("fpga-emulated", "fixed<4,6>")
    assert "fpga-emulated" in cls.unavailable_reason("cpu", "fixed<16,6>")
    assert cls.artifact_kind("fixed<12,4>") == "hls4ml:fixed<12,4>"


def test_hls4ml_refuses_a_folder_it_did_not_make(tmp_path):
    with pytest.raises(FileNotFoundError, match="xpubench.json"):
        get_backend("hls4ml")(tmp_path, device="fpga-emulated")
