"""Fidelity that fits the output: top-1 agreement for class scores, closeness figures for maps and regressions."""

import json

import numpy as np

from xpubench.core.cell import FIDELITY_TOLERANCE, Cell, CellResult, Fidelity


def segmentation_pair():
    """A [B, C, H, W] map whose classes are nearly tied: float noise of 3e-6 flips many argmaxes."""
    rng = np.random.default_rng(7)
    reference = (0.5 + 1e-6 * rng.standard_normal((4, 3, 16, 16))).astype(np.float32)
    output = reference + (3e-6 * rng.uniform(-1, 1, reference.shape)).astype(np.float32)
    return output, reference


def test_a_segmentation_map_gets_closeness_not_top1_agreement():
    output, reference = segmentation_pair()
    # What the old rule reported: the argmax of the last axis, a map's width, not a class.
    assert np.mean(np.argmax(output, -1) == np.argmax(reference, -1)) < 0.9
    found = Fidelity.compare([output], [reference], "onnxruntime onnx:fp32")
    assert found.top1_agreement is None
    assert found.max_abs < 1e-5
    assert found.relative_error is not None and found.relative_error < 1e-5
    assert found.cosine_similarity is not None and found.cosine_similarity > 0.999999
    assert found.within_tolerance == 1.0 and found.tolerance_rel == FIDELITY_TOLERANCE


def test_within_tolerance_counts_the_elements_that_moved():
    reference = np.linspace(-2, 2, 400, dtype=np.float32).reshape(4, 1, 10, 10)
    output = reference.copy()
    output.reshape(-1)[:100] += 0.5  # a quarter moved by 25 % of max|ref|, far beyond 1e-3 of it
    found = Fidelity.compare([output], [reference], "ref")
    assert found.within_tolerance == 0.75
    assert 0 < found.relative_error < 1 and found.cosine_similarity < 1


def test_class_scores_keep_top1_agreement_only():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6]], np.float32)
    found = Fidelity.compare([scores[[0, 1, 1]]], [scores], "ref")
    assert found.top1_agreement == 2 / 3
    assert (found.relative_error, found.cosine_similarity, found.within_tolerance, found.tolerance_rel) == (None,) * 4


def test_the_metric_decides_what_counts_as_class_scores():
    rng = np.random.default_rng(1)
    per_position = rng.random((5, 7, 4)).astype(np.float32)  # [B, positions, classes], scored by top1
    assert Fidelity.compare([per_position], [per_position], "ref", metric="top1").top1_agreement == 1.0
    assert Fidelity.compare([per_position], [per_position], "ref").top1_agreement is None
    targets = rng.random((5, 3)).astype(np.float32)  # [B, 3] regression targets
    regression = Fidelity.compare([targets], [targets], "ref", metric="resolution")
    assert regression.top1_agreement is None and regression.relative_error == 0.0


def test_the_record_and_the_report_carry_the_new_figures():
    from xpubench.report.html import FIDELITY_COLUMNS, table_html
    from xpubench.report.table import shown

    output, reference = segmentation_pair()
    result = CellResult.not_measured(Cell("seg.onnx", "openvino"), "ok", "",
                                     fidelity=Fidelity.compare([output], [reference], "ref"))
    record = {**json.loads(json.dumps(result.as_dict())), "run_id": "r1"}
    assert record["fidelity"]["within_tolerance"] == 1.0 and record["fidelity"]["tolerance_rel"] == FIDELITY_TOLERANCE
    assert record["fidelity"]["top1_agreement"] is None
    columns = [c for c in FIDELITY_COLUMNS if shown(c, [record])]
    html = table_html([record], columns, "fidelity-table")
    for header in ("relative error", "cosine", "within tolerance", "100.00%"):
        assert header in html, header
