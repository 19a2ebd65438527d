"""Every field of a stored cell record is defined in docs/metrics.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import run_cli

DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
# Groups defined whole: their members are the runtime's or LoadGen's own names, or keyed by a value.
FREE_FORM = (
    "options", "details", "environment", "scenario_result.curve", "scenario_result.parameters",
    "scenario_result.settings", "scenario_result.percentiles_ms", "scenario_result.early_stopping_estimates_ms",
    "scenario_result.log_messages", "worker.environment",
)


def fields(record: dict, prefix: str = "") -> set[str]:
    """The dotted names of a record's fields, nested groups included, free-form groups not entered."""
    found = set()
    for key, value in record.items():
        name = f"{prefix}{key}"
        found.add(name)
        if isinstance(value, dict) and name not in FREE_FORM:
            found |= fields(value, f"{name}.")
    return found


def defined() -> set[str]:
    """The names the doc's tables define: the first column, in backticks."""
    return set(re.findall(r"^\| `([^`]+)` \|", DOC.read_text(), flags=re.MULTILINE))


def test_the_free_form_groups_are_defined_too():
    assert set(FREE_FORM) <= defined()


@pytest.mark.slow
def test_every_field_of_a_stored_record_is_defined(relu_onnx, tmp_path):
    out = tmp_path / "cells.json"
    done = run_cli("run", str(relu_onnx), "--backend", "onnxruntime,edgetpu", "--batch", "1", "--qps", "200",
                   "--scenario", "single-stream,server,batch-sweep,offline,mlperf-singlestream",
                   "--runs", "10", "--min-time", "0.05", "--max-time", "1", "--warmup-runs", "1",
                   "--warmup-time", "0", "--results", str(tmp_path / "r"), "--json", str(out))
    assert done.returncode == 3, done.stderr  # some cells unavailable, as wanted
    records = json.loads(out.read_text())["cells"]
    assert {r["status"] for r in records} == {"ok", "unavailable"}
    names = set().union(*(fields(r) for r in records))
    missing = sorted(names - defined())
    assert not missing, f"fields stored but not defined in docs/metrics.md: {missing}"
