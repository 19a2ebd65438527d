"""The HTML report in headless Chromium, its tables against the store, load_results() and show's exports."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli
from xpubench import load_results
from xpubench.errors import UsageError
from xpubench.report.frame import COLUMNS
from xpubench.report.plots import pareto_front
from xpubench.report.table import energy_mj, field
from xpubench.store import ResultStore

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A real short run of dense1 on ONNX Runtime at two precisions and two batch sizes, with a TDP."""
    folder = tmp_path_factory.mktemp("report") / "results"
    out = run_cli("run", "dense1", "--backend", "onnxruntime", "--precision", "fp32,int8", "--batch", "1,4",
                  "--runs", "20", "--min-time", "0.1", "--warmup-runs", "2", "--warmup-time", "0.05", "--tdp", "15",
                  "--results", str(folder))
    assert out.returncode == 0, out.stderr[-3000:]
    with ResultStore(folder, create=False) as store:
        run_ids = [r["run_id"] for r in store.runs()]
    assert len(run_ids) == 1
    return folder, run_ids


@pytest.fixture(scope="module")
def report(results: tuple[Path, list[str]], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """`xpubench report RUN --html FILE --png DIR` of that run."""
    folder, run_ids = results
    tmp = tmp_path_factory.mktemp("html")
    html, png = tmp / "report.html", tmp / "png"
    out = run_cli("report", *run_ids, "--html", str(html), "--png", str(png), "--results", str(folder))
    assert out.returncode == 0, out.stderr
    assert str(html.resolve()) in out.stdout
    return html, png


class Tables(HTMLParser):
    """Every <td data-field> of the page with its row's run and key, and the text it shows."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict] = []
        self.rows: list[tuple[str | None, str | None, str | None]] = []  # (table id, run, key)
        self._table: list[dict] = []
        self._row: dict = {}
        self._cell: dict | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table.append(a)
        elif tag == "tr":
            self._row = a
            if "data-key" in a:
                self.rows.append((self._table[-1].get("id"), a.get("data-run"), a["data-key"]))
        elif tag == "td" and "data-field" in a:
            run = self._row.get("data-run") or self._table[-1].get("data-run")
            table = self._table[-1].get("id") or self._table[-1].get("class")
            self._cell = {**a, "run": run, "key": self._row.get("data-key"), "table": table, "text": ""}

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.figures.append(self._cell)
            self._cell = None
        elif tag == "table":
            self._table.pop()


def shown_number(text: str) -> tuple[float, float]:
    """A figure as shown -> (value, half a unit of its last digit): how far rounding may have moved it."""
    text = text.strip().rstrip("%")
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    scale = 10.0 ** int(exponent or 0)
    return float(text), 0.5 * 10.0 ** -decimals * scale


def stored_value(path: str, record: dict | None, run: dict) -> object:
    if path.startswith("environment."):
        return run["environment"].get(path.removeprefix("environment."))
    assert record is not None
    return energy_mj(record) if path == "energy_mj" else field(record, path)


def chromium_or_skip() -> None:
    """Debian's chromium, installed as `make test` does when missing; skip only when that cannot be done."""
    if os.path.exists(CHROMIUM):
        return
    if shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
                       shell=True, capture_output=True, timeout=900)
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get): "
                    "`make test` installs it on Debian")


@pytest.mark.slow
def test_report_opens_offline_in_chromium_with_every_plot_drawn(report, tmp_path: Path) -> None:
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    html, png = report
    url = html.resolve().as_uri()
    outside: list[str] = []
    errors: list[str] = []
    screenshot = tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = browser.new_page()

            def route(r):
                if r.request.url == url:
                    r.continue_()
                else:  # nothing but the file itself may be requested
                    outside.append(r.request.url)
                    r.abort()

            page.route("**/*", route)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: outside.append(r.url) if r.url != url else None)
            page.goto(url)
            page.wait_for_load_state("load")

            plots = page.query_selector_all("figure.plot")
            names = sorted(f.get_attribute("id") for f in plots)
            # dense1 has labels, the TDP is given: these draw; price is absent (no catalogue entry needed).
            assert {"plot-latency-vs-batch", "plot-pareto", "plot-energy", "plot-latency-distribution"} <= set(names)
            for figure in plots:
                svg = figure.query_selector("svg")
                box = svg.bounding_box()
                assert box and box["width"] > 200 and box["height"] > 100, figure.get_attribute("id")
                marks = svg.evaluate("s => s.querySelectorAll('path, use, line, rect').length")
                labels = svg.evaluate("s => Array.from(s.querySelectorAll('text')).map(t => t.textContent).join(' ')")
                assert marks > 20 and "dense1" in labels + figure.inner_text(), figure.get_attribute("id")

            # Sorting by a column orders the rows by the stored values; filtering hides what does not match.
            table = page.locator("#cells-table")
            header = table.locator("thead th", has_text="median [ms]")
            header.click()
            headers = [h.inner_text().strip() for h in table.locator("thead th").all()]
            column = headers.index(header.inner_text().strip())
            values = [float(v) for v in table.locator(f"tbody tr td:nth-child({column + 1})").evaluate_all(
                "tds => tds.map(td => td.getAttribute('data-value')).filter(v => v !== null)")]
            assert values == sorted(values) and len(values) == 4
            page.fill('input[data-filter="cells-table"]', "int8")
            visible = table.locator("tbody tr:visible")
            assert visible.count() == 2 and all("int8" in t for t in visible.all_inner_texts())
            assert page.inner_text('[data-count="cells-table"]') == "2 of 4 rows"

            page.fill('input[data-filter="cells-table"]', "")
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert not outside, f"the page requested {outside}"
    assert not errors, errors
    assert screenshot.stat().st_size > 50_000
    print(f"\nreport screenshot: {screenshot}")
    pngs = sorted(png.glob("*.png"))
    assert {p.stem for p in pngs} == {n.removeprefix("plot-") for n in names}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in pngs)


@pytest.mark.slow
def test_every_figure_in_the_html_tables_is_the_stored_value(results, report) -> None:
    folder, run_ids = results
    html, _ = report
    parsed = Tables()
    parsed.feed(html.read_text())
    with ResultStore(folder, create=False) as store:
        runs = {i: store.run(i) for i in run_ids}
        records = {(i, r["key"]): r for i in run_ids for r in store.cells(i)}
    # Every stored cell is a row of the cells table; every measured one of the fidelity table.
    assert sorted((run, key) for t, run, key in parsed.rows if t == "cells-table") == sorted(records)
    measured = {k for k, r in records.items() if r["status"] == "ok"}
    assert {(run, key) for t, run, key in parsed.rows if t == "fidelity-table"} == measured

    checked: dict[str, int] = {}
    for fig in parsed.figures:
        path = fig["data-field"]
        record = records.get((fig["run"], fig["key"])) if fig["key"] else None
        value = stored_value(path, record, runs[fig["run"]])
        text = fig["text"].strip()
        if value is None:
            assert text == "" and "data-value" not in fig, (path, fig)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            if fig["data-value"][:1] in ("[", "{"):  # lists and tables of the environment, as JSON
                assert json.loads(fig["data-value"]) == value, (path, fig)
            continue
        # The data-value is the stored number exactly; the text is it, rounded to the digits shown.
        assert float(fig["data-value"]) == value, (path, fig["data-value"], value)
        scale = {"model_bytes": 1 / 1024, "delegated_fraction": 100.0, "stability.interval_halfwidth": 100.0}.get(
            path, 1.0)
        shown, half_unit = shown_number(text)
        assert math.isclose(shown, value * scale, rel_tol=1e-12, abs_tol=half_unit * 1.0000001), (path, text, value)
        checked[path] = checked.get(path, 0) + 1
    # The figures people read are all there, for every measured cell.
    for path in ("latency_ms.median", "latency_ms.p99", "per_sample_ms", "throughput_sps", "accuracy.value",
                 "fidelity.max_abs", "fidelity.top1_agreement", "model_bytes", "energy.k_w_ms"):
        assert checked.get(path, 0) >= len(measured), (path, checked.get(path))
    assert checked.get("environment.logical_cpus") == len(run_ids)
    # The summary names, per goal, the cell with the best stored figure.
    ok = [r for r in records.values() if r["status"] == "ok"]
    best_latency = min(ok, key=lambda r: r["per_sample_ms"])
    summary = [f for f in parsed.figures if f["data-field"] == "per_sample_ms" and f["table"] == "summary"]
    assert any(float(f["data-value"]) == best_latency["per_sample_ms"] for f in summary)


@pytest.mark.slow
def test_a_report_of_two_runs_names_each_run(results, tmp_path: Path) -> None:
    from xpubench.report.html import ReportData, write_report

    folder, run_ids = results
    with ResultStore(folder, create=False) as store:
        first = ReportData.from_store(store, run_ids)
    # A second run: the same stored cells under another id (as `xpubench run` twice would give).
    other = {**first.runs[0], "run_id": "second"}
    data = ReportData(
        [*first.runs, other],
        [*first.records, *({**r, "run_id": "second"} for r in first.records)],
        {**first.samples, **{("second", key): v for (_, key), v in first.samples.items()}},
    )
    html = tmp_path / "two.html"
    write_report(data, html)
    parsed = Tables()
    parsed.feed(html.read_text())
    cells = [(run, key) for t, run, key in parsed.rows if t == "cells-table"]
    assert len(cells) == 8 and {run for run, _ in cells} == {run_ids[0], "second"}
    text = html.read_text()
    assert "<h3>run second</h3>" in text and "<th>run</th>" in text
    assert f"onnxruntime cpu fp32 run {run_ids[0]}" in text and "onnxruntime cpu fp32 run second" in text  # legends


def test_pareto_front_keeps_the_cells_nothing_beats() -> None:
    # (latency, accuracy): the third is slower and no more accurate than the first; the fourth is best-accuracy.
    points = [(1.0, 0.90), (2.0, 0.95), (3.0, 0.90), (4.0, 0.97), (0.5, 0.80)]
    assert pareto_front(points) == [4, 0, 1, 3]
    # Lower is better (a resolution): the slower point must be lower to be on the front.
    assert pareto_front([(1.0, 0.2), (2.0, 0.1), (3.0, 0.3)], higher=False) == [0, 1]


@pytest.mark.slow
def test_confusion_matrices_of_a_real_run_are_stored_and_drawn(results, tmp_path: Path) -> None:
    from xpubench.report.html import ReportData, write_report

    folder, run_ids = results
    with ResultStore(folder, create=False) as store:
        data = ReportData.from_store(store, run_ids[:1])
    for r in data.records:  # the sweep stores each classifier cell's counts; its diagonal is the accuracy
        counts = np.asarray(r["details"]["confusion"])
        assert counts.shape == (10, 10) and np.trace(counts) / counts.sum() == pytest.approx(r["accuracy"]["value"])
    html = tmp_path / "counts.html"
    write_report(data, html)
    text = html.read_text()
    assert 'id="plot-confusion-dense1"' in text and "No confusion matrices" not in text
    for r in data.records:  # records without counts (an older store) get a note saying what is missing
        del r["details"]["confusion"]
    write_report(data, html)
    text = html.read_text()
    assert "No confusion matrices" in text and "<code>details.confusion</code>" in text
    assert 'id="plot-confusion-dense1"' not in text


@pytest.mark.slow
def test_load_results_returns_one_row_per_stored_cell_with_the_documented_columns(results) -> None:
    folder, run_ids = results
    df = load_results(folder)
    with sqlite3.connect(folder / "xpubench.db") as db:
        stored = db.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    assert len(df) == stored == 4
    assert list(df.columns[: len(COLUMNS)]) == list(COLUMNS)
    documented = README.read_text()
    assert all(f"`{c}`" in documented for c in COLUMNS), [c for c in COLUMNS if f"`{c}`" not in documented]
    assert df["latency_ms.median"].dtype == "float64" and df["batch_size"].dtype == "Int64"
    with ResultStore(folder, create=False) as store:
        for run_id in run_ids:
            one = load_results(folder / "xpubench.db", run_id=run_id)
            cells = store.cells(run_id)
            assert one["key"].tolist() == [c["key"] for c in cells] and set(one["run_id"]) == {run_id}
    first = load_results(folder, run_id=run_ids[0]).set_index("key")
    with ResultStore(folder, create=False) as store:
        for cell in store.cells(run_ids[0]):
            got = first.loc[cell["key"]]
            assert got["latency_ms.p99"] == cell["latency_ms"]["p99"]
            assert got["fidelity.max_abs"] == cell["fidelity"]["max_abs"]
            assert got["accuracy.value"] == cell["accuracy"]["value"]
            assert got["energy.k_w_ms"] == cell["energy"]["k_w_ms"] == got["energy_mj"]
            assert got["model_bytes"] == cell["model_bytes"] and got["label"] == "onnxruntime"
    with pytest.raises(UsageError, match="no run"):
        load_results(folder, run_id="no-such-run")


def _same(a: pd.Series, b: pd.Series) -> bool:
    """Equal values, missing equal to missing, whatever dtype a text format read them back as (CSV
    cannot tell empty text from missing)."""

    def missing(v: object) -> bool:
        return v is None or v is pd.NA or v != v or v == ""

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        missing_x, missing_y = missing(x), missing(y)
        if missing_x or missing_y:
            if not (missing_x and missing_y):
                return False
        elif isinstance(y, float | np.floating) or isinstance(x, float | np.floating):
            if float(x) != float(y):
                return False
        elif str(x) != str(y) and not (isinstance(x, bool | np.bool_) and str(x) == str(y).capitalize()):
            return False
    return True


@pytest.mark.slow
def test_show_exports_round_trip(results, tmp_path: Path) -> None:
    folder, run_ids = results
    run_id = run_ids[0]
    expected = load_results(folder, run_id=run_id)
    with ResultStore(folder, create=False) as store:
        records = store.cells(run_id)

    out = run_cli("show", run_id, "--format", "json", "--results", str(folder))
    assert json.loads(out.stdout) == {"run_id": run_id, "cells": records}

    for fmt in ("csv", "parquet"):
        path = tmp_path / f"cells.{fmt}"
        out = run_cli("show", run_id, "--format", fmt, "--out", str(path), "--results", str(folder))
        assert out.returncode == 0, out.stderr
        back = pd.read_csv(path) if fmt == "csv" else pd.read_parquet(path)
        assert list(back.columns) == list(expected.columns) and len(back) == len(expected)
        if fmt == "parquet":
            pd.testing.assert_frame_equal(back, expected)
        for name in expected.columns:
            assert _same(back[name], expected[name]), (fmt, name)
    out = run_cli("show", run_id, "--format", "parquet", "--results", str(folder))
    assert out.returncode == 2 and "--out" in out.stderr

    # markdown and the console table: one row per cell, figures as stored to the digits shown, the fastest
    # cell of the model marked.
    fastest = min((r for r in records if r["status"] == "ok"), key=lambda r: r["per_sample_ms"])
    for fmt in ("markdown", "table"):
        out = run_cli("show", run_id, "--format", fmt, "--results", str(folder))
        lines = [ln for ln in out.stdout.splitlines() if re.search(r"\bdense1\b", ln) and ": " not in ln]
        if fmt == "markdown":
            header = [c.strip() for c in out.stdout.splitlines()[0].strip("|").split(" | ")]
            rows = [[c.strip().replace("\\*", "*") for c in ln.strip().strip("|").split(" | ")] for ln in lines]
        else:
            header = re.split(r"\s{2,}", out.stdout.splitlines()[1].strip())
            rows = [re.split(r"\s{2,}", ln.strip()) for ln in lines]
            header = ["", *header]
            rows = [row if row[0] == "*" else ["", *row] for row in rows]
        assert len(rows) == len(records), (fmt, out.stdout)
        marked = [row for row in rows if row[0] == "*"]
        assert len(marked) == 1 and marked[0][header.index("precision")] == fastest["precision"]
        assert marked[0][header.index("batch")] == str(fastest["batch_size"])
        median = header.index("median [ms]")
        for row, record in zip(rows, records, strict=True):
            shown, half_unit = shown_number(row[median])
            assert abs(shown - record["latency_ms"]["median"]) <= half_unit * 1.0000001, (fmt, row[median])


@pytest.mark.slow
def test_scenarios_and_their_verdicts_are_shown_when_a_run_has_several(results, tmp_path: Path) -> None:
    from xpubench.report.html import ReportData, write_report
    from xpubench.report.table import render_text

    folder, run_ids = results
    with ResultStore(folder, create=False) as store:
        data = ReportData.from_store(store, run_ids)
    # One run alone, all single-stream: no scenario column.
    assert "scenario" not in render_text(data.records, bold=False).splitlines()[0]
    # The same cells again as a server scenario (what `--scenario single-stream,server` stores).
    served = [{**r, "key": r["key"].replace("single-stream", "server"), "scenario": "server",
               "scenario_result": {"verdict": "bound met", "qps": 1234.5, "p99_ms": 2.5, "bound_ms": 10.0}}
              for r in data.records]
    data.records += served
    data.samples.update({(run, key.replace("single-stream", "server")): v for (run, key), v in data.samples.items()})
    table = render_text(data.records, bold=False).splitlines()
    header = re.split(r"\s{2,}", table[0].strip())
    assert "scenario" in header and "scenario result" in header
    rows = [ln for ln in table if " server " in ln and "dense1" in ln]
    assert len(rows) == len(served) and all("bound met, 1234 q/s, p99 2.5 ms vs bound 10 ms" in ln for ln in rows)
    assert sum(" single-stream " in ln for ln in table) == len(served)  # the others say which they are
    html = tmp_path / "scenarios.html"
    write_report(data, html)
    text = html.read_text()
    assert text.count(">bound met, 1234 q/s") == len(served) and text.count("<td>server</td>") == 2 * len(served)
    assert "onnxruntime cpu fp32 server" in text  # the plots' legends tell the scenarios apart
