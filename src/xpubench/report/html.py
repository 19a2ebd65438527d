"""One self-contained HTML report of stored runs: summary, plots, fidelity, environment, every cell.

The file opens offline: plots are inline SVG, style and script are inline, nothing is fetched.
Every figure in its tables is a `<td data-field="PATH" data-value="VALUE">TEXT</td>`: PATH is the
dotted path of the value in the cell record (or `energy_mj`, energy per inference: see
table.energy_mj), VALUE the stored value exactly (Python's repr of a float, which reads back to the
same number), TEXT the value formatted by the column's rule (report/table.py lists the rules). Each
table row of a cell carries `data-run` and `data-key`, the cell's run id and key in the store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from xpubench.report.table import (
    BEST_NOTE,
    CELL_COLUMNS,
    Column,
    best_per_model,
    cell_name,
    columns_for,
    decimals4,
    energy_mj,
    num,
    shown,
    signed,
    text,
)
from xpubench.report.table import (
    field as read_field,
)
from xpubench.version import __version__

Record = dict[str, Any]


@dataclass
class ReportData:
    """What a report shows: the runs, their cell records (each with `run_id`) and raw call times."""

    runs: list[Record]
    records: list[Record]
    samples: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_store(cls, store: Any, run_ids: Sequence[str]) -> ReportData:
        runs, records, samples = [], [], {}
        for run_id in run_ids:
            runs.append(store.run(run_id))
            for r in store.cells(run_id):
                r = {**r, "run_id": run_id}
                r.pop("environment", None)
                records.append(r)
                if r["status"] == "ok":
                    samples[(run_id, r["key"])] = store.samples(run_id, r["key"])
        return cls(runs, records, samples)


def data_value(value: Any) -> str:
    """The stored value as the data-value attribute: exact and machine-readable."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | str):
        return str(value)
    return json.dumps(value, sort_keys=True)


def td(shown: str, path: str | None = None, value: Any = None, cls: str = "") -> str:
    attrs = f' class="{cls}"' if cls else ""
    if path is not None:
        attrs += f' data-field="{escape(path)}"'
        if value is not None:
            attrs += f' data-value="{escape(data_value(value))}"'
    return f"<td{attrs}>{escape(shown)}</td>"


def column_td(column: Column, record: Record) -> str:
    value = column.value(record)
    if column.scale is None:  # text columns: no figure to check
        return td(column.format(value))
    return td(column.format(value), column.path, value, "num")


def cell_attrs(r: Record) -> str:
    return f' data-run="{escape(r["run_id"])}" data-key="{escape(r["key"])}"'


def short_cell(r: Record, multi_run: bool) -> str:
    text_ = cell_name(r).removeprefix(f"{r['model']} ")
    return f"{text_} (run {r['run_id']})" if multi_run else text_


# -- the summary -------------------------------------------------------------------------------------

# (goal, the figure's path, header with unit, read, lower is better)
GOALS: tuple[tuple[str, str, str, Callable[[Record], float | None], bool], ...] = (
    ("latency", "per_sample_ms", "time per inference [ms]", lambda r: r.get("per_sample_ms"), True),
    ("throughput", "throughput_sps", "throughput [1/s]", lambda r: r.get("throughput_sps"), False),
    ("energy", "energy_mj", "energy per inference [mJ]", energy_mj, True),
    ("price", "price.usd_per_million", "price [$/M inf]", lambda r: read_field(r, "price.usd_per_million"), True),
)


def best_cells(records: Sequence[Record]) -> dict[str, dict[str, Record | None]]:
    """Per model, per goal, the best measured non-emulated cell (None when no cell has that figure)."""
    out: dict[str, dict[str, Record | None]] = {}
    for r in records:
        out.setdefault(r["model"], {g[0]: None for g in GOALS})
    for r in records:
        if r["status"] != "ok" or r.get("emulated"):
            continue
        for goal, _path, _header, read, lower in GOALS:
            value = read(r)
            if value is None:
                continue
            current = out[r["model"]][goal]
            if current is None or (value < read(current) if lower else value > read(current)):
                out[r["model"]][goal] = r
    return out


def summary_html(data: ReportData, multi_run: bool) -> str:
    best = best_cells(data.records)
    rows = []
    for model, goals in best.items():
        for goal, path, header, read, _lower in GOALS:
            r = goals[goal]
            if r is None:
                why = {
                    "energy": "no energy figure (no meter, no TDP: pass --tdp W)",
                    "price": "no price (device not in the catalogue)",
                }.get(goal, "no measured cell")
                rows.append(f"<tr><td>{escape(model)}</td><td>{goal}</td><td colspan=5 class=missing>{why}</td></tr>")
                continue
            accuracy, delta = read_field(r, "accuracy.value"), r.get("accuracy_delta")
            rows.append(
                f"<tr{cell_attrs(r)}><td>{escape(model)}</td><td>{goal}</td>"
                f"{td(num(read(r)), path, read(r), 'num')}<td>{escape(header)}</td>"
                f"<td>{escape(short_cell(r, multi_run))}</td>"
                f"{td(decimals4(accuracy), 'accuracy.value', accuracy, 'num')}"
                f"{td(signed(delta), 'accuracy_delta', delta, 'num')}</tr>"
            )
    return (
        '<table class="summary"><thead><tr><th>model</th><th>best for</th><th>figure</th><th>unit</th>'
        "<th>cell</th><th>accuracy</th><th>accuracy cost (Δ vs fp32)</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table><p class=note>Best among measured cells that are not emulated. The accuracy cost is the "
        "cell's accuracy minus the float32 reference's on the same data.</p>"
    )


# -- tables ------------------------------------------------------------------------------------------

FIDELITY_COLUMNS: tuple[Column, ...] = (
    *CELL_COLUMNS,
    Column("accuracy", "accuracy.value", decimals4),
    Column("Δacc", "accuracy_delta", signed),
    Column("top-1 agreement", "fidelity.top1_agreement", lambda v: num(v, 4)),
    Column("max |Δ|", "fidelity.max_abs", lambda v: num(v, 3)),
    Column("mean |Δ|", "fidelity.mean_abs", lambda v: num(v, 3)),
    # Maps and regressions (no top-1): how close the whole output is, and the share of close elements.
    Column("relative error", "fidelity.relative_error", lambda v: num(v, 3), optional=True),
    Column("cosine", "fidelity.cosine_similarity", lambda v: num(v, 6), optional=True),
    Column("within tolerance", "fidelity.within_tolerance", lambda v: "" if v is None else f"{v:.2%}", 100.0,
           optional=True),
    Column("tolerance [× max|ref|]", "fidelity.tolerance_rel", lambda v: num(v, 3), optional=True),
    Column("reference", "fidelity.reference", text, None),
)

# The cells table shows the console's columns plus these, in the HTML only.
EXTRA_COLUMNS: tuple[Column, ...] = (
    Column("p90 [ms]", "latency_ms.p90"),
    Column("max [ms]", "latency_ms.max"),
    Column("first [ms]", "first_inference_ms"),
    Column("energy source", "energy.source", text, None),
    Column("price basis", "price.basis", text, None, optional=True),
)


def table_html(records: Sequence[Record], columns: Sequence[Column], table_id: str, best: set[int] | None = None,
               multi_run: bool = False) -> str:
    head = "".join(f"<th>{escape(c.header)}</th>" for c in columns)
    if multi_run:
        head = "<th>run</th>" + head
    if best is not None:
        head = '<th title="best">★</th>' + head
    body = []
    for i, r in enumerate(records):
        cells = "".join(column_td(c, r) for c in columns)
        if multi_run:
            cells = td(r["run_id"]) + cells
        attrs = cell_attrs(r)
        if best is not None:
            cells = (td("★", cls="mark") if i in best else td("")) + cells
            attrs += ' class="best"' if i in best else ""
        body.append(f"<tr{attrs}>{cells}</tr>")
    return (
        f'<div class="tools"><input type="search" placeholder="filter rows: words all must match, e.g. int8 litert" '
        f'data-filter="{table_id}"><span class="count" data-count="{table_id}"></span></div>'
        f'<div class="scroll"><table id="{table_id}" class="sortable"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def environment_html(run: Record) -> str:
    env = run.get("environment") or {}
    rows = [
        f"<tr><th>started</th>{td(str(run.get('started_at')))}</tr>",
        f"<tr><th>finished</th>{td(str(run.get('finished_at') or ''))}</tr>",
        f"<tr><th>status</th>{td(str(run.get('status')))}</tr>",
        f"<tr><th>command</th>{td(str(run.get('command')))}</tr>",
    ]
    for key, value in env.items():
        if isinstance(value, dict):
            shown = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, list):
            shown = ", ".join(map(str, value))
        else:
            shown = "" if value is None else str(value)
        rows.append(f"<tr><th>{escape(key)}</th>{td(shown, f'environment.{key}', value)}</tr>")
    return (f'<h3>run {escape(run["run_id"])}</h3><table class="env" data-run="{escape(run["run_id"])}">'
            f"<tbody>{''.join(rows)}</tbody></table>")


def notes_html(records: Sequence[Record]) -> str:
    items = []
    for r in records:
        label = cell_name(r)
        if r["status"] != "ok":
            items.append(f"<li><b>{escape(label)}</b>: {escape(r['status'])}: {escape(r.get('reason') or '')}</li>")
        for w in r.get("warnings") or ():
            items.append(f"<li><b>{escape(label)}</b>: unstable: {escape(w)}</li>")
    if not items:
        return "<p>None.</p>"
    return f"<details><summary>{len(items)} notes</summary><ul class=notes>{''.join(items)}</ul></details>"


def confusion_note(records: Sequence[Record], plots: Sequence[Any]) -> str:
    if any(p.name.startswith("confusion-") for p in plots):
        return ""
    classified = any(read_field(r, "fidelity.top1_agreement") is not None for r in records)
    if not classified:
        return "<p class=missing>No classifier among these cells: confusion matrices apply to class scores.</p>"
    return ("<p class=missing>No confusion matrices: these records store no per-class counts "
            "(<code>details.confusion</code>, rows: true class, columns: predicted class), as runs stored by an "
            "older xpubench do not.</p>")


# -- the page ----------------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1280px;padding:1rem 2rem;
color:#1b1f24;line-height:1.4}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2rem;margin-top:2rem}
nav a{margin-right:1rem}
table{border-collapse:collapse;font-size:.82rem}th,td{padding:.2rem .5rem;border-bottom:1px solid #eaeef2;
text-align:left;white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}
thead th{background:#f6f8fa}.scroll thead th{position:sticky;top:0}table.sortable th{cursor:pointer;user-select:none}
th.asc::after{content:" ▲"}th.desc::after{content:" ▼"}
tr.best td{font-weight:600;background:#fff8c5}td.mark{color:#9a6700}
.scroll{overflow:auto;max-height:70vh;border:1px solid #d0d7de}
.tools{margin:.5rem 0}.tools input{width:24rem;padding:.2rem .4rem}.count{margin-left:1rem;color:#57606a}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}figcaption,.note{color:#57606a;font-size:.85rem}
.missing{color:#9a6700}table.env th{background:none;cursor:default}
table.env td{white-space:normal;overflow-wrap:anywhere}code{background:#f6f8fa;padding:0 .2rem}
"""

SCRIPT = """
(function(){
  function key(td){var v=td.getAttribute('data-value');var t=td.textContent.trim();
    if(v!==null&&v!==''&&!isNaN(Number(v)))return{n:Number(v)};if(t!==''&&!isNaN(Number(t)))return{n:Number(t)};
    return{s:t.toLowerCase()};}
  function cmp(a,b){if(a.n!==undefined&&b.n!==undefined)return a.n-b.n;if(a.n!==undefined)return -1;
    if(b.n!==undefined)return 1;return a.s<b.s?-1:a.s>b.s?1:0;}
  document.querySelectorAll('table.sortable').forEach(function(table){
    table.querySelectorAll('thead th').forEach(function(th,col){
      th.addEventListener('click',function(){
        var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
        var asc=!th.classList.contains('asc');
        table.querySelectorAll('thead th').forEach(function(h){h.classList.remove('asc','desc');});
        th.classList.add(asc?'asc':'desc');
        rows.sort(function(a,b){var r=cmp(key(a.cells[col]),key(b.cells[col]));return asc?r:-r;});
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  function count(id){var table=document.getElementById(id);var out=document.querySelector('[data-count="'+id+'"]');
    var rows=table.tBodies[0].rows;var shown=0;for(var i=0;i<rows.length;i++)if(rows[i].style.display!=='none')shown++;
    out.textContent=shown+' of '+rows.length+' rows';}
  document.querySelectorAll('input[data-filter]').forEach(function(input){
    var id=input.getAttribute('data-filter');count(id);
    input.addEventListener('input',function(){
      var words=input.value.toLowerCase().split(/\\s+/).filter(Boolean);
      var rows=document.getElementById(id).tBodies[0].rows;
      for(var i=0;i<rows.length;i++){var t=rows[i].textContent.toLowerCase();
        rows[i].style.display=words.every(function(w){return t.indexOf(w)>=0;})?'':'none';}
      count(id);
    });
  });
})();
"""


def render(data: ReportData, plots: Sequence[Any]) -> str:
    """The whole page as one string."""
    from xpubench.report.plots import to_svg

    multi_run = len(data.runs) > 1
    records = data.records
    measured = [r for r in records if r["status"] == "ok"]
    figures = []
    for plot in plots:
        if plot.figure is None:
            figures.append(f'<p class="missing" id="plot-{plot.name}"><b>{escape(plot.title)}</b>: '
                           f"{escape(plot.missing)}.</p>")
            continue
        figures.append(f'<figure id="plot-{plot.name}" class="plot"><h3>{escape(plot.title)}</h3>'
                       f"{to_svg(plot.figure, plot.name)}<figcaption>{escape(plot.caption)}</figcaption></figure>")
    by_name = {p.name: f for p, f in zip(plots, figures, strict=True)}

    def drawn(prefix: str) -> str:
        return "".join(f for name, f in by_name.items() if name.startswith(prefix))

    # Sections that only some runs have: served load levels, split cells.
    optional = [(sid, name, drawn(prefix)) for sid, name, prefix in (
        ("load", "Served load: throughput, latency and the batches formed", "load-"),
        ("timelines", "Split timelines and speed-up attribution", "timeline-"),
    )]
    main_plots = ["latency-vs-batch", "pareto", "energy", "price"]
    confusion = drawn("confusion-")
    cell_columns = [*columns_for(records), *columns_for_extra(records)]
    fidelity_columns = [c for c in FIDELITY_COLUMNS if shown(c, measured)]
    title = ", ".join(r["run_id"] for r in data.runs)
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    sections = [
        ("summary", "Summary", summary_html(data, multi_run)),
        ("plots", "Latency, accuracy, energy and price", "".join(by_name[n] for n in main_plots)),
        ("fidelity", "Fidelity against the float32 reference",
         "<p class=note>Each variant's outputs against the float32 reference's on the same inputs.</p>"
         + table_html(measured, fidelity_columns, "fidelity-table", multi_run=multi_run)
         + "<h3>Confusion matrices</h3>" + confusion_note(measured, plots) + confusion),
        ("distributions", "Latency distributions", by_name["latency-distribution"]),
        *[(sid, name, html) for sid, name, html in optional if html],
        ("cells", "Every cell",
         f"<p class=note>★ {escape(BEST_NOTE)}. Click a header to sort; type to filter.</p>"
         + table_html(records, cell_columns, "cells-table", best_per_model(records), multi_run)
         + "<h3>Cells not measured, and warnings</h3>" + notes_html(records)),
        ("environment", "Environment", "".join(environment_html(run) for run in data.runs)),
    ]
    nav = "".join(f'<a href="#{sid}">{escape(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{escape(name)}</h2>{html}</section>' for sid, name, html in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no favicon request
        f"<title>xpubench report: {escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>xpubench report</h1><p class=note>Runs {escape(title)}: {len(records)} cells, {len(measured)} "
        f"measured. Generated {generated} by xpubench {__version__}.</p><nav>{nav}</nav>{body}"
        f"<script>{SCRIPT}</script></body></html>"
    )


def columns_for_extra(records: Sequence[Record]) -> list[Column]:
    return [c for c in EXTRA_COLUMNS if shown(c, records)]


def write_report(data: ReportData, html_path: Path | None = None, png_dir: Path | None = None) -> list[Path]:
    """Draw the plots once; write the HTML page and/or the PNG files. Returns the paths written."""
    from xpubench.report.plots import make_plots, write_png

    plots = make_plots(data.records, data.samples)
    written: list[Path] = []
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render(data, plots), encoding="utf-8")
        written.append(html_path)
    if png_dir is not None:
        written += write_png(plots, png_dir)
    return written
