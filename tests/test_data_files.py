"""--data from .npz, HDF5 and ROOT files, with --x and --y naming the arrays, datasets or branches."""

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from xpubench.data.files import DataFile, load_arrays
from xpubench.errors import UsageError

FAST = ["--runs", "3", "--min-time", "0.01", "--warmup-runs", "1", "--warmup-time", "0"]


@pytest.fixture
def arrays():
    rng = np.random.default_rng(3)
    return rng.random((40, 3), dtype=np.float32), rng.integers(0, 2, 40)


def write_root(path, branches, rntuple=False):
    """A TTree named events (or an RNTuple, what uproot writes by default)."""
    import uproot

    with uproot.recreate(path) as file:
        if rntuple:
            file["events"] = branches
            return
        file.mktree("events", {k: (v.dtype, v.shape[1:]) if v.ndim > 1 else v.dtype for k, v in branches.items()})
        file["events"].extend(branches)


def test_npz_hdf5_and_root_give_the_same_arrays(tmp_path, arrays):
    import h5py

    x, y = arrays
    np.savez(tmp_path / "d.npz", inputs=x, labels=y)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("jets/features", data=x)
        f.create_dataset("jets/is_top", data=y)
    branches = {"pt": x[:, 0], "eta": x[:, 1], "phi": x[:, 2], "is_top": y.astype(np.int32)}
    write_root(tmp_path / "d.root", branches)
    write_root(tmp_path / "n.root", branches, rntuple=True)

    for data in (
        DataFile(tmp_path / "d.npz", x="inputs", y="labels"),
        DataFile(tmp_path / "d.h5", x="jets/features", y="jets/is_top"),
        DataFile(tmp_path / "d.root", x="events/pt,eta,phi", y="is_top"),
        DataFile(tmp_path / "n.root", x="pt,eta,phi", y="is_top"),
    ):
        got_x, got_y = load_arrays(data)
        assert got_x.dtype == np.float32 and got_y.dtype == np.int64, data
        np.testing.assert_array_equal(got_x, x)
        np.testing.assert_array_equal(got_y, y)


def test_fixed_size_root_branches_keep_their_shape_and_float_targets_stay_float(tmp_path):
    images = np.random.default_rng(0).random((10, 8), dtype=np.float32)
    energy = np.linspace(1, 100, 10)
    write_root(tmp_path / "img.root", {"x": images, "energy": energy})
    x, y = load_arrays(DataFile(tmp_path / "img.root", y="energy", y_given=True))
    assert x.shape == (10, 8) and y.dtype == np.float32
    np.testing.assert_allclose(y, energy, rtol=1e-6)
    # No y branch under the default name: unlabelled, not an error.
    assert load_arrays(DataFile(tmp_path / "img.root"))[1] is None


@pytest.mark.parametrize(
    ("make", "data", "message"),
    [
        (lambda p: np.savez(p / "a.npz", x=np.zeros((3, 2))), DataFile("a.npz", x="pixels"), "no array named pixels"),
        (lambda p: np.savez(p / "a.npz", x=np.zeros((3, 2))), DataFile("a.npz", y="lab", y_given=True),
         "no array named lab"),
        (lambda p: np.savez(p / "a.npz", x=np.zeros((3, 2)), y=np.zeros(4, int)), DataFile("a.npz"),
         "3 samples but y has 4"),
        (lambda p: (p / "a.h5").write_text("not hdf5"), DataFile("a.h5"), "not a readable HDF5 file"),
        (lambda p: write_root(p / "a.root", {"x": np.zeros(3)}), DataFile("a.root", x="other/x"), "no TTree other"),
        (lambda p: write_root(p / "a.root", {"x": np.zeros(3)}), DataFile("a.root", x="events/q"), "no branch q"),
        (lambda p: (p / "a.csv").write_text("1,2"), DataFile("a.csv"), "give a .npz, HDF5"),
    ],
)
def test_bad_data_files_say_what_is_wrong(tmp_path, make, data, message):
    make(tmp_path)
    with pytest.raises(UsageError, match=message) as caught:
        load_arrays(DataFile(tmp_path / data.path, x=data.x, y=data.y, y_given=data.y_given))
    assert "\n" not in str(caught.value)


def tiny_onnx(path):
    """A 3-feature, 2-class logistic model written with the ONNX helper API."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array([[2.0, -1.0], [-1.0, 2.0], [0.5, 0.5]], np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "w"], ["logits"]), helper.make_node("Softmax", ["logits"], ["p"])],
        "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", 2])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


@pytest.mark.slow
def test_run_scores_a_model_on_root_branches(tmp_path, arrays):
    x, _ = arrays
    y = (x[:, 1] > x[:, 0]).astype(np.int64)  # what the tiny model's weights decide, mostly
    tiny_onnx(tmp_path / "tiny.onnx")
    write_root(tmp_path / "jets.root", {"pt": x[:, 0], "eta": x[:, 1], "phi": x[:, 2], "label": y})
    out = tmp_path / "out.json"
    done = run_cli("run", str(tmp_path / "tiny.onnx"), "--backend", "onnxruntime", "--batch", "4",
                   "--data", str(tmp_path / "jets.root"), "--x", "events/pt,eta,phi", "--y", "label",
                   "--json", str(out), "--results", str(tmp_path / "res"), *FAST)
    assert done.returncode == 0, done.stderr[-2000:]
    (cell,) = json.loads(out.read_text())["cells"]
    assert cell["status"] == "ok" and cell["dataset"] == "jets.root"
    scores = x @ np.array([[2.0, -1.0], [-1.0, 2.0], [0.5, 0.5]], np.float32)
    assert cell["accuracy"]["value"] == pytest.approx(np.mean(scores.argmax(1) == y))


def test_x_and_y_without_data_is_a_one_line_error(tmp_path):
    done = run_cli("run", "dense1", "--x", "images", "--results", str(tmp_path / "res"))
    assert done.returncode == 2 and "--data" in done.stderr and done.stderr.count("\n") == 1
