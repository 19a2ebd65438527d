"""`xpubench compare`: real short runs of a model file that a change made slower, compared cell by cell."""

import json

import numpy as np
import pytest

from tests.conftest import run_cli
from xpubench.cli import main
from xpubench.cli.compare import compare_samples
from xpubench.store import ResultStore

pytestmark = pytest.mark.slow

FAST = ["--runs", "200", "--min-time", "0.1", "--warmup-runs", "5", "--warmup-time", "0", "--repeats", "5"]


def write_model(path, hidden):
    """x (N, 64) -> MatMul -> Relu -> MatMul -> (N, 64); `hidden` sets the work per inference."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(hidden)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])],
        "net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])],
        [numpy_helper.from_array(rng.standard_normal((64, hidden)).astype(np.float32), "w1"),
         numpy_helper.from_array(rng.standard_normal((hidden, 64)).astype(np.float32), "w2")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run A: net.onnx as it was; run B: the same file after a change made it 64x the work, measured
    at one more batch size. Same cell keys, a genuinely slower model."""
    folder = tmp_path_factory.mktemp("compare")
    results = folder / "res"
    for hidden, batches in ((64, "1"), (4096, "1,4")):
        write_model(folder / "net.onnx", hidden)
        done = run_cli("run", "net.onnx", "--backend", "onnxruntime", "--batch", batches, "--results", str(results),
                       *FAST, cwd=folder)
        assert done.returncode == 0, done.stderr[-3000:]
    with ResultStore(results, create=False) as store:
        run_a, run_b = [r["run_id"] for r in store.runs()]
    return results, run_a, run_b


class Done:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def compare(capsys):
    """`xpubench compare ARGS` in this process (the runs above went through the real command line)."""

    def call(results, *args):
        code = main(["compare", *args, "--results", str(results)])
        out = capsys.readouterr()
        return Done(code, out.out, out.err)

    return call


def test_a_run_compared_with_itself_has_no_regression(runs, compare):
    results, run_a, _ = runs
    done = compare(results, run_a, run_a)
    assert done.returncode == 0, done.stderr
    assert "0 regression(s) of 1 compared cells" in done.stdout
    data = json.loads(compare(results, run_a, run_a, "--json").stdout)
    (cell,) = data["cells"]
    assert cell["verdict"] == "same" and cell["ratio"] == 1.0 and cell["p_value"] == pytest.approx(1.0)


def test_a_slower_model_is_flagged_as_a_regression_and_exits_1(runs, compare):
    results, run_a, run_b = runs
    done = run_cli("compare", run_a, run_b, "--results", str(results), timeout=120)  # as a user runs it
    assert done.returncode == 1, done.stdout + done.stderr
    assert "REGRESSION" in done.stdout and "1 regression(s)" in done.stdout
    cells = {c["key"]: c for c in json.loads(compare(results, run_a, run_b, "--json").stdout)["cells"]}
    slower = cells["net.onnx/onnxruntime/cpu/fp32/b1/t1/single-stream/end-to-end"]
    assert slower["verdict"] == "regression" and slower["ratio"] > 2 and slower["p_value"] < 0.01
    assert slower["test"] == "Welch t on 5 + 5 repeat medians"  # the repeats are the independent measurements
    assert cells["net.onnx/onnxruntime/cpu/fp32/b4/t1/single-stream/end-to-end"]["verdict"] == "only in B"
    # The other way round it is an improvement; a threshold above the slow-down accepts it.
    back = compare(results, run_b, run_a)
    assert back.returncode == 0 and "improvement" in back.stdout and "only in A" in back.stdout
    ratio = slower["ratio"]
    assert compare(results, run_a, run_b, "--threshold", str(ratio)).returncode == 0


def test_unknown_run_ids_and_bad_options_are_one_line_errors(runs, compare):
    results, run_a, _ = runs
    done = compare(results, run_a, "no-such-run")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no-such-run" in done.stderr
    done = compare(results, run_a, run_a, "--alpha", "2")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--alpha" in done.stderr
    done = compare(results.parent / "nothing", "a", "b")
    assert done.returncode == 2 and "no results" in done.stderr


def test_the_statistics_on_the_stored_samples(runs):
    results, run_a, run_b = runs
    key = "net.onnx/onnxruntime/cpu/fp32/b1/t1/single-stream/end-to-end"
    with ResultStore(results, create=False) as store:
        a, b = store.samples(run_a, key), store.samples(run_b, key)
    assert a.size >= 200 and b.size >= 200
    found = compare_samples(a, b)
    assert found.verdict == "regression" and found.ratio == pytest.approx(np.median(b) / np.median(a))
    # Two halves of one run: no difference beyond the threshold, whatever the p-value says.
    halves = compare_samples(a[::2], a[1::2])
    assert halves.verdict != "regression" and halves.verdict != "improvement"
    with pytest.raises(ValueError, match="at least 2 samples"):
        compare_samples(a[:1], b)
