"""The zoo: every model trains at a tiny size, converts to ONNX and LiteRT, and runs there as in Keras."""

import io
import json

import numpy as np
import pytest

from tests.conftest import run_cli
from xpubench.errors import UsageError
from xpubench.models import resolve
from xpubench.models.datasets import load_dataset
from xpubench.models.metrics import HIGHER_IS_BETTER, evaluate, roc_auc
from xpubench.models.training import _Progress, ensure_trained
from xpubench.models.zoo import DATASETS, FAMILIES, SCAN_SIDES, ZOO, expand, input_shape, lookup

rng = np.random.default_rng(5)
# Every trained model, and one point of each scan (the other sides differ only in their side).
CONVERTED = [name for name, e in ZOO.items() if e.task != "none"] + ["matmul-scan-64", "dense-scan-64"]


def test_every_entry_names_its_dataset_metric_and_sizes():
    assert {"dense1", "conv3dense1", "mobilenet-v1", "mobilenet-v2", "resnet50v2", "densenet169", "facile",
            "toptag-resnet", "calo-gan"} <= set(ZOO)
    for entry in ZOO.values():
        assert entry.dataset is None or entry.dataset in DATASETS
        assert entry.metric is None or entry.metric in HIGHER_IS_BETTER
        assert set(entry.sizes) == {"default", "full", "tiny"} and set(entry.parameters) == {"default", "full"}
        if entry.task != "none":
            assert entry.sizes["default"].epochs >= 1 and entry.sizes["tiny"].train <= entry.sizes["default"].train
    assert ZOO["resnet50v2"].sizes["full"].data == (("side", 200),)
    assert (ZOO["resnet50v2"].sizes["full"].train, ZOO["resnet50v2"].sizes["full"].test) == (10000, 2000)
    assert input_shape(ZOO["densenet169"], ZOO["densenet169"].sizes["full"]) == (200, 200, 3)


def test_scan_families_expand_to_their_sides_and_points_resolve_by_name():
    assert expand(["matmul-scan", "dense1"]) == (*(f"matmul-scan-{n}" for n in SCAN_SIDES), "dense1")
    assert expand(["dense-scan:tiny"]) == tuple(f"dense-scan-{n}:tiny" for n in SCAN_SIDES)
    assert lookup("matmul-scan-256") == (ZOO["matmul-scan-256"], "default")
    assert lookup("resnet50v2:full") == (ZOO["resnet50v2"], "full")
    assert lookup("resnet50v2:huge") is None and lookup("nope") is None
    with pytest.raises(UsageError, match="family of 5 models: matmul-scan-64"):
        resolve("matmul-scan")
    assert set(FAMILIES) == {"matmul-scan", "dense-scan"}


def test_top1_auc_and_resolution():
    labels = np.array([0, 1, 2, 1])
    scores = np.eye(3)[[0, 1, 1, 1]]
    assert evaluate("top1", scores, labels) == 0.75
    y = rng.integers(0, 2, 300)
    s = rng.standard_normal(300) + y
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in s[y == 1] for b in s[y == 0]])
    assert evaluate("auc", np.stack([-s, s], axis=1), y) == pytest.approx(brute)
    assert roc_auc(np.array([1.0, 1.0, 1.0]), np.array([0, 1, 1])) == 0.5  # ties count half
    assert roc_auc(np.array([0.0, 1.0]), np.array([1, 0])) == 0.0
    truth = rng.uniform(10, 100, 20000)
    assert evaluate("resolution", truth * (1 + 0.1 * rng.standard_normal(20000)), truth) == pytest.approx(0.1, rel=0.05)
    # a shower's cells are summed first; a constant sampling fraction does not change the resolution
    showers = (0.02 * truth * (1 + 0.05 * rng.standard_normal(20000)))[:, None, None] * np.full((1, 2, 3), 1 / 6)
    assert evaluate("resolution", showers, truth) == pytest.approx(0.05, rel=0.05)
    assert HIGHER_IS_BETTER == {"top1": True, "auc": True, "resolution": False}
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate("f1", scores, labels)


def test_generated_data_is_cached_by_name_events_seed_and_size(test_home):
    a = load_dataset("jets", 12, 6, side=8)
    folders = sorted((test_home / "cache" / "xpubench" / "data").glob("jets-*"))
    assert len(folders) == 2 and all((f / "x.npy").exists() for f in folders)  # train and held-out
    from xpubench.models import datasets

    datasets._generated.cache_clear()
    b = load_dataset("jets", 12, 6, side=8)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.shape == (12, 8, 8, 1) and a.x_test.shape == (6, 8, 8, 1) and a.classes == ("QCD", "top")
    assert not np.array_equal(a.x_train[:6], a.x_test)  # independent seeds
    load_dataset("jets", 12, 6, side=10)
    assert len(list((test_home / "cache" / "xpubench" / "data").glob("jets-*"))) == 4
    digits = load_dataset("digits", side=32, channels=3)
    assert digits.x_train.shape[1:] == (32, 32, 3) and digits.x_train[:, :2].max() == 0
    with pytest.raises(UsageError, match="unknown dataset"):
        load_dataset("cifar")


def test_progress_prints_a_line_per_epoch_and_one_estimate():
    said: list[str] = []
    stream = io.StringIO()
    progress = _Progress(2, 4, said.append, stream)
    for epoch in range(2):
        for index in range(4):
            progress.batch_done(epoch, index, 0.5 + epoch, "d 0.700")
        progress.epoch_done(epoch)
    lines = stream.getvalue().splitlines()
    assert [line.split(" loss ")[0].strip() for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert "loss 0.5000 d 0.700" in lines[0] and "loss 1.5000" in lines[1] and lines[1].endswith(" s")
    assert len(said) == 1 and said[0].startswith("  about ") and "(8 batches, " in said[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", CONVERTED)
def test_model_trains_converts_and_runs_as_in_keras(name):
    import keras

    from xpubench.backends import get_backend

    entry = ZOO[name]
    workload = resolve(f"{name}:tiny", say=lambda _m: None)
    folder = workload.artifact("keras:fp32").parent
    said: list[str] = []
    assert ensure_trained(entry, said.append, "tiny") == folder and said == []  # cached: not trained again
    meta = json.loads((folder / "meta.json").read_text())
    if entry.sizes["tiny"].model == entry.sizes["default"].model:  # same network, smaller input or data
        assert meta["parameters"] == entry.parameters["default"]
    if entry.metric is None:
        assert workload.x_eval is None and meta["keras_accuracy"] is None
    else:
        assert workload.y_eval is not None and isinstance(meta["keras_accuracy"], float)
    x = workload.fidelity_inputs()[0][:8]
    expected = keras.saving.load_model(workload.artifact("keras:fp32"), compile=False).predict(x, verbose=0)
    scale = float(np.abs(expected).max()) or 1.0
    for backend_name, kind in (("onnxruntime", "onnx:fp32"), ("litert", "tflite:fp32")):
        backend = get_backend(backend_name)(workload.artifact(kind), threads=1)
        try:
            (out,) = backend.predict([x])
        finally:
            backend.close()
        assert out.shape == expected.shape
        np.testing.assert_allclose(out / scale, expected / scale, atol=1e-4, err_msg=f"{name} on {backend_name}")


@pytest.mark.slow
def test_full_size_parameter_counts_match_the_listing():
    import keras

    for name, entry in ZOO.items():
        if entry.dataset in ("lartpc", "hcal"):
            continue  # side-free (global pooling; fixed features): checked at the tiny size
        size = entry.sizes["full"]
        outputs = {"digits": 10, "jets": 2}.get(entry.dataset or "", 0)
        model = entry.build(input_shape(entry, size), outputs, **dict(size.model))
        assert model.count_params() == entry.parameters["full"], name
        keras.backend.clear_session()
    assert ZOO["mobilenet-v2"].parameters["full"] == 2_270_794  # the edge study's MobileNet figure


@pytest.mark.slow
def test_cli_lists_the_zoo_and_trains_a_scan():
    listed = run_cli("zoo")
    assert listed.returncode == 0, listed.stderr
    for name in ZOO:
        assert f"  {name} " in listed.stdout
    assert "2.3M" in listed.stdout and "200x200x3" in listed.stdout
    trained = run_cli("zoo", "train", "matmul-scan")
    assert trained.returncode == 0, trained.stderr
    assert "matmul-scan-1024: 1,048,576 parameters (untrained)" in trained.stdout
    assert "built" in run_cli("zoo").stdout
    first = run_cli("zoo", "train", "dense1", "--epochs", "1")
    assert first.returncode == 0, first.stderr
    assert "training dense1 at default size" in first.stdout and "about " in first.stdout
    assert "epoch 1/1 loss " in first.stderr  # the progress line
    assert "dense1: 7,850 parameters, held-out top1 " in first.stdout
    again = run_cli("zoo", "train", "dense1", "--epochs", "1")
    assert again.returncode == 0 and "training" not in again.stdout and "epoch" not in again.stderr
    bad = run_cli("zoo", "train", "resnet51")
    assert bad.returncode == 2 and "unknown model 'resnet51'" in bad.stderr
