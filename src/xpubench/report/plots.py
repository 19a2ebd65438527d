"""The report's plots, drawn with matplotlib (no pyplot state) and written as inline SVG or PNG files."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from xpubench.report.table import backend_label, energy_mj, field
from xpubench.report.timeline import LOSSES, attribution_line, attribution_of

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Record = dict[str, Any]
# Percentiles drawn for a latency distribution: dense where the tail is, so it stays visible.
NINES = np.concatenate([np.linspace(0, 0.9, 46), 1 - np.logspace(-1, -5, 81)])
RC = {
    "svg.fonttype": "none",  # text stays text: smaller files, selectable labels
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


@dataclass
class Plot:
    """One figure of the report, or the reason it could not be drawn."""

    name: str  # file stem for --png, and the HTML anchor
    title: str
    caption: str
    figure: Figure | None = None
    missing: str = ""  # why there is no figure


def measured(records: Sequence[Record]) -> list[Record]:
    return [r for r in records if r.get("status") == "ok" and r.get("per_sample_ms") is not None]


def series_label(r: Record, multi_run: bool = False, multi_threads: bool = False) -> str:
    """The line a cell belongs to in a plot: backend[options] device precision (+ threads, scenario, run)."""
    parts = [backend_label(r), r["device"], r["precision"]]
    if multi_threads:
        parts.append(f"t{r['threads']}")
    if r.get("scenario") not in (None, "single-stream"):
        parts.append(r["scenario"])
    if r.get("timing") == "compute":
        parts.append("compute")
    if multi_run and r.get("run_id"):
        parts.append(f"run {r['run_id']}")
    return " ".join(parts)


def cell_label(r: Record, **kw: bool) -> str:
    return f"{series_label(r, **kw)} b{r['batch_size']}"


class Palette:
    """One colour per series label, the same in every plot."""

    def __init__(self) -> None:
        self._colors: dict[str, Any] = {}

    def __call__(self, label: str) -> Any:
        if label not in self._colors:
            from matplotlib import colormaps

            cmap = colormaps["tab20" if len(self._colors) >= 10 else "tab10"]
            n = len(self._colors)
            self._colors[label] = cmap(n % 10) if n < 10 else cmap(((n - 10) * 2 + 1) % 20)
        return self._colors[label]


def _grid(count: int, width: float = 5.2, height: float = 3.6, legend_rows: int = 0) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    cols = min(count, 2)
    rows = math.ceil(count / cols)
    if count == 1:
        width *= 1.5  # one panel: room for its legend below
    fig = Figure(figsize=(width * cols, height * rows + 0.18 * legend_rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def _plain_log(axis: Any) -> None:
    """Log-scale ticks at 1, 2, 5 x 10^n labelled as plain numbers (0.2, not 2x10^-1)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    low, high = sorted(axis.get_view_interval())
    decades = math.log10(high / low) if low > 0 else math.inf
    # 1-2-5 ticks while they fit; over a wide range only the powers of ten, or their labels collide.
    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if decades <= 3 else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _legend_below(fig: Figure, axes: list[Axes]) -> None:
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    if handles:
        # As many columns as the figure's width holds (an 8 pt character is ~0.07 in, a handle ~0.6 in).
        entry = 0.6 + 0.07 * max(len(k) for k in handles)
        ncol = max(1, min(len(handles), int(fig.get_figwidth() // entry)))
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=ncol)


def _by_model(records: Sequence[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(r["model"], []).append(r)
    return groups


def batch_of(r: Record) -> int:
    """The batch a cell's calls ran at: the scenario's own (offline, batch-sweep) where it chose one."""
    return int(field(r, "scenario_result.batch") or r["batch_size"])


def latency_vs_batch(records: Sequence[Record], palette: Palette, **kw: bool) -> Plot:
    from matplotlib.ticker import NullLocator

    plot = Plot("latency-vs-batch", "Latency per inference vs batch size",
                "Median time per inference (call time / batch) for each backend, device and precision; "
                "bars: 95 % interval of the median. Log scales.")
    cells = measured(records)
    if not cells:
        plot.missing = "no measured cell"
        return plot
    groups = _by_model(cells)
    n_series = len({series_label(r, **kw) for r in cells})
    fig, axes = _grid(len(groups), legend_rows=math.ceil(n_series / 2))
    for ax, (model, rs) in zip(axes, groups.items(), strict=True):
        lines: dict[str, list[Record]] = {}
        for r in rs:
            lines.setdefault(series_label(r, **kw), []).append(r)
        for label, points in lines.items():
            points.sort(key=batch_of)
            x = np.array([batch_of(r) for r in points], float)
            y = np.array([r["per_sample_ms"] for r in points])
            low = np.array([field(r, "latency_ms.ci95_low") or r["latency_ms"]["median"] for r in points]) / x
            high = np.array([field(r, "latency_ms.ci95_high") or r["latency_ms"]["median"] for r in points]) / x
            style = "--" if points[0].get("emulated") else "-"
            ax.errorbar(x, y, yerr=[np.maximum(y - low, 0), np.maximum(high - y, 0)], fmt="o" + style,
                        color=palette(label), label=label, capsize=2, markersize=4, linewidth=1.2)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        if high < 4 * low:  # a near-flat panel: at least a factor 4, so ticks stay few and the scale honest
            mid = math.sqrt(low * high)
            ax.set_ylim(mid / 2, mid * 2)
        _plain_log(ax.yaxis)
        ax.set_title(model)
        ax.set_xlabel("batch size")
        ax.set_ylabel("time per inference [ms]")
        batches = sorted({batch_of(r) for r in rs})
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.xaxis.set_minor_locator(NullLocator())
    _legend_below(fig, axes)
    plot.figure = fig
    return plot


def higher_is_better(metric: str | None) -> bool:
    try:
        from xpubench.models.metrics import HIGHER_IS_BETTER
    except ImportError:  # the report must draw even without the zoo's metrics module
        HIGHER_IS_BETTER = {"resolution": False}
    return HIGHER_IS_BETTER.get(metric or "", True)


def pareto_front(points: Sequence[tuple[float, float]], higher: bool = True) -> list[int]:
    """Indices of the points no other point beats on both latency (lower) and accuracy, fastest first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1] if higher else points[i][1]))
    front: list[int] = []
    best = -math.inf if higher else math.inf
    for i in order:
        acc = points[i][1]
        if (acc > best) if higher else (acc < best):
            front.append(i)
            best = acc
    return front


def pareto(records: Sequence[Record], palette: Palette, **kw: bool) -> Plot:
    plot = Plot("pareto", "Accuracy vs latency: the Pareto front",
                "Each marker is a measured cell; its area is proportional to the artifact's size. The line joins "
                "the cells no other cell beats on both latency and accuracy. Emulated cells are left out: their "
                "latency says nothing about the target chip.")
    cells = [r for r in measured(records) if not r.get("emulated") and field(r, "accuracy.value") is not None]
    if not cells:
        plot.missing = ("no measured cell has an accuracy: the model's data has no labels (give --data with x and "
                        "y) or every cell is emulated")
        return plot
    groups = _by_model(cells)
    n_series = len({series_label(r, **kw) for r in cells})
    fig, axes = _grid(len(groups), legend_rows=math.ceil(n_series / 2))
    largest = max(r.get("model_bytes") or 1 for r in cells)
    for ax, (model, rs) in zip(axes, groups.items(), strict=True):
        metric = field(rs[0], "accuracy.metric")
        higher = higher_is_better(metric)
        points = [(r["per_sample_ms"], r["accuracy"]["value"]) for r in rs]
        labelled: set[str] = set()
        for r, (x, y) in zip(rs, points, strict=True):
            size = 30 + 400 * (r.get("model_bytes") or 0) / largest
            label = series_label(r, **kw)
            ax.scatter([x], [y], s=size, color=palette(label), alpha=0.6, edgecolors="black", linewidths=0.5)
            if label not in labelled:  # a legend entry of one size: the marker's area is the cell's, not the line's
                labelled.add(label)
                ax.plot([], [], "o", color=palette(label), alpha=0.6, markeredgecolor="black", markeredgewidth=0.5,
                        label=label)
        front = pareto_front(points, higher)
        fx = [points[i][0] for i in front]
        fy = [points[i][1] for i in front]
        ax.plot(fx, fy, "-", color="black", linewidth=1, drawstyle="steps-post", zorder=0)
        for i in front:
            r = rs[i]
            ax.annotate(f"{r['precision']} b{r['batch_size']}", points[i], textcoords="offset points",
                        xytext=(5, 4), fontsize=7)
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
        ax.text(0.99, 0.01, f"marker area ~ artifact size (largest {largest / 1024:.0f} KiB)",
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.4")
        ax.set_title(model)
        ax.set_xlabel("time per inference [ms]")
        ax.set_ylabel(f"{metric} ({'higher' if higher else 'lower'} is better)")
        ax.margins(0.12)
        if higher and max(p[1] for p in points) <= 1.0:
            low, high = ax.get_ylim()
            ax.set_ylim(low, min(high, 1.0 + 0.02 * (high - low)))  # a share cannot pass 1
    _legend_below(fig, axes)
    plot.figure = fig
    return plot


def bar_label(r: Record, **kw: bool) -> str:
    """`device | model backend precision bN ...`: the cell label with its device named once, first."""
    words = cell_label(r, **kw).split(" ")
    words.remove(r["device"])
    return f"{r['device']} | {r['model']} {' '.join(words)}"


def _bars_by_device(records: Sequence[Record], value: Any, xlabel: str, palette: Palette, **kw: bool) -> Figure:
    from matplotlib.figure import Figure

    rows = sorted(records, key=lambda r: (r["device"], r["model"], value(r)))
    fig = Figure(figsize=(9, 1.2 + 0.24 * len(rows)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))
    values = [value(r) for r in rows]
    colors = [palette(series_label(r, **kw)) for r in rows]
    bars = ax.barh(y, values, color=colors)
    for bar, r in zip(bars, rows, strict=True):
        if (r.get("energy") or {}).get("source") in ("modelled", None) and "energy" in xlabel:
            bar.set_hatch("//")
    ax.set_yticks(y, [bar_label(r, **kw) for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.set_xlabel(xlabel)
    return fig


def energy(records: Sequence[Record], palette: Palette, **kw: bool) -> Plot:
    plot = Plot("energy", "Energy per inference by device",
                "Energy per inference in mJ (= W*ms). Hatched bars are modelled: the K-function, TDP x time per "
                "inference; plain bars were measured by the meter named in the cell table.")
    cells = [r for r in measured(records) if energy_mj(r) is not None and not r.get("emulated")]
    if not cells:
        plot.missing = ("no energy figure: no meter could be read and the catalogue knows no TDP for this "
                        "processor (pass --tdp W to `xpubench run` for the K-function)")
        return plot
    plot.figure = _bars_by_device(cells, energy_mj, "energy per inference [mJ] (K-function: W*ms)", palette, **kw)
    return plot


def price(records: Sequence[Record], palette: Palette, **kw: bool) -> Plot:
    plot = Plot("price", "Price per million inferences by device",
                "US dollars per million inferences, on the basis named in the cell table (cloud price per hour, "
                "or purchase price amortised plus energy).")
    cells = [r for r in measured(records) if field(r, "price.usd_per_million") is not None]
    if not cells:
        plot.missing = "no price: no measured cell's device is in the hardware catalogue"
        return plot
    plot.figure = _bars_by_device(cells, lambda r: r["price"]["usd_per_million"], "$ per million inferences",
                                  palette, **kw)
    return plot


def latency_distribution(records: Sequence[Record], samples: dict[tuple[str, str], np.ndarray],
                         palette: Palette, **kw: bool) -> Plot:
    plot = Plot("latency-distribution", "Call time by percentile",
                "Time of each call (one batch) by percentile, from the raw samples: the right-hand side is the "
                "tail (p99, p99.9, ...); the last point of each line is the slowest call.")
    cells = [r for r in measured(records) if samples.get((r.get("run_id", ""), r["key"]), np.empty(0)).size]
    if not cells:
        plot.missing = "no raw samples stored"
        return plot
    panels: dict[tuple[str, int], list[Record]] = {}
    for r in cells:
        panels.setdefault((r["model"], r["batch_size"]), []).append(r)
    n_series = len({series_label(r, **kw) for r in cells})
    fig, axes = _grid(len(panels), legend_rows=math.ceil(n_series / 2))
    ticks = [0.5, 0.9, 0.99, 0.999, 0.9999]
    order = list(dict.fromkeys(r["model"] for r in cells))  # the models in the order the other plots use
    for ax, ((model, batch), rs) in zip(axes, sorted(panels.items(), key=lambda p: (order.index(p[0][0]), p[0][1])),
                                        strict=True):
        right = 0.0
        for r in rs:
            ms = np.sort(samples[(r.get("run_id", ""), r["key"])].astype(np.float64)) / 1e6
            q = NINES[NINES <= 1 - 1 / ms.size] if ms.size > 1 else np.array([0.0])
            x = np.append(-np.log10(1 - q), math.log10(ms.size))  # the slowest call sits at 1 - 1/n
            y = np.append(np.quantile(ms, q), ms[-1])
            label = series_label(r, **kw)
            ax.plot(x, y, "-", color=palette(label), label=label, linewidth=1.2)
            ax.plot(x[-1:], y[-1:], "o", color=palette(label), markersize=3)
            right = max(right, float(x[-1]))
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        shown = [(t, name) for t, name in zip(ticks, ("p50", "p90", "p99", "p99.9", "p99.99"), strict=True)
                 if -math.log10(1 - t) <= right + 1e-9]  # no tick past the slowest call: no empty right half
        ax.set_xticks([-math.log10(1 - t) for t, _ in shown], [name for _, name in shown])
        ax.set_xlim(0, right * 1.03 + 0.05)
        ax.set_title(f"{model}, batch {batch}")
        ax.set_xlabel("percentile")
        ax.set_ylabel("call time [ms]")
    _legend_below(fig, axes)
    plot.figure = fig
    return plot


def confusion_of(r: Record) -> list[list[float]] | None:
    """The cell's confusion matrix (rows: true class, columns: predicted), where the record has one."""
    matrix = r.get("confusion") or (r.get("details") or {}).get("confusion")
    return matrix if isinstance(matrix, list) and matrix and isinstance(matrix[0], list) else None


def confusion(records: Sequence[Record], **kw: bool) -> list[Plot]:
    """One figure per model: a confusion matrix per backend, device and precision (smallest batch)."""
    plots = []
    for model, rs in _by_model(r for r in measured(records) if confusion_of(r)).items():
        chosen: dict[str, Record] = {}
        for r in sorted(rs, key=lambda r: r["batch_size"]):
            chosen.setdefault(series_label(r, **kw), r)
        fig, axes = _grid(len(chosen), width=4.2, height=3.8)
        for ax, (label, r) in zip(axes, chosen.items(), strict=True):
            m = np.asarray(confusion_of(r), dtype=float)
            ax.imshow(m, cmap="Blues")
            ax.grid(False)
            if m.shape[0] <= 12:
                for (i, j), v in np.ndenumerate(m):
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if v > m.max() / 2 else "black")
            ax.set_title(f"{label} b{r['batch_size']}", fontsize=8)
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model).strip("-")
        plots.append(Plot(f"confusion-{slug}", f"Confusion matrices: {model}",
                          "Counts on the held-out data; rows: true class, columns: predicted class.", fig))
    return plots


def load_plots(records: Sequence[Record], palette: Palette, **kw: bool) -> list[Plot]:
    """`xpubench load` levels: throughput against concurrency, latency against throughput, and the batch sizes the
    server formed; none when the records hold no load level."""
    levels = [r for r in records if r.get("scenario") == "load" and r.get("status") == "ok"
              and r.get("scenario_result")]
    if not levels:
        return []
    series: dict[str, list[Record]] = {}
    for r in levels:
        options = {k: v for k, v in (r.get("options") or {}).items() if k not in ("concurrency", "rate")}
        name = f"{r['model']} {r['backend']}{'' if not options else ' ' + str(options)}"
        series.setdefault(f"{name} run {r['run_id']}" if kw.get("multi_run") and r.get("run_id") else name,
                          []).append(r)
    fig, (curve, tail) = _grid(2, legend_rows=len(series))
    for label, rows in series.items():
        closed = sorted((r for r in rows if r["scenario_result"].get("concurrency")),
                        key=lambda r: r["scenario_result"]["concurrency"])
        if closed:
            curve.plot([r["scenario_result"]["concurrency"] for r in closed],
                       [r["scenario_result"]["throughput_rps"] for r in closed], "o-", color=palette(label),
                       label=label)
        ordered = sorted(rows, key=lambda r: r["scenario_result"]["throughput_rps"])
        x = [r["scenario_result"]["throughput_rps"] for r in ordered]
        tail.plot(x, [r["scenario_result"]["p50_ms"] for r in ordered], "o-", color=palette(label), label=label)
        tail.plot(x, [r["scenario_result"]["p99_ms"] for r in ordered], "^--", color=palette(label), alpha=0.6)
    curve.set_xscale("log", base=2)
    curve.xaxis.set_major_formatter(__import__("matplotlib.ticker").ticker.FuncFormatter(lambda v, _p: f"{v:g}"))
    curve.set_xlabel("requests in flight (concurrency)")
    curve.set_ylabel("throughput [requests/s]")
    tail.set_yscale("log")
    _plain_log(tail.yaxis)
    tail.set_xlabel("throughput [requests/s]")
    tail.set_ylabel("latency [ms]: p50 (o), p99 (^)")
    _legend_below(fig, [curve, tail])
    plots = [Plot("load-curves", "Load: throughput and latency", "Each point is one load level of `xpubench load`: "
                  "closed-loop levels by requests in flight (left); every level's p50 and p99 latency at the "
                  "throughput it reached (right). Latency counts from the scheduled send in an open loop.", fig)]
    formed = [r for r in levels if (r["scenario_result"].get("server") or {}).get("batch_histogram")]
    if formed:
        hist, axes = _grid(min(len(formed), 6), height=2.6)
        for ax, r in zip(axes, formed, strict=False):
            rows = r["scenario_result"]["server"]["batch_histogram"]
            ax.bar([h["batch_size"] for h in rows], [h["executions"] for h in rows], color=palette(cell_label(r)))
            level = ", ".join(f"{k} {v}" for k, v in (r.get("options") or {}).items())
            ax.set_title(f"{r['model']} {level}: avg batch {r['scenario_result']['server']['avg_batch']:.3g}",
                         fontsize=8)
            ax.set_xlabel("batch size formed")
            ax.set_ylabel("batches")
        plots.append(Plot("load-batches", "Load: the batches the server formed",
                          "From the server's statistics extension over each level (the first six levels with "
                          "batches): how many batches of each size the dynamic batcher ran.", hist))
    return plots


def timelines(records: Sequence[Record], **kw: bool) -> list[Plot]:
    """For each composite cell with a trace: its parts (or stages and transfers) over the traced batches, one row
    each, and its speed-up attribution as the wall time per batch split into the ideal and the losses."""
    from matplotlib.figure import Figure

    plots = []
    for r in records:
        found = (r.get("split") or {}).get("trace") if r.get("status") == "ok" else None
        if not found or not found.get("intervals"):
            continue
        rows = list(found["rows"])
        fig = Figure(figsize=(9, 1.2 + 0.42 * len(rows) + 1.1), layout="constrained")
        gantt, bar = fig.subplots(2, 1, height_ratios=[max(len(rows), 1), 1.6])
        batches = max(found.get("batches") or 1, 1)
        from matplotlib import colormaps

        shades = colormaps["tab10"]
        for item in found["intervals"]:
            y = rows.index(item["row"]) if item["row"] in rows else len(rows)
            transfer = item["kind"] == "transfer"
            gantt.barh(y, item["end_ms"] - item["start_ms"], left=item["start_ms"], height=0.6,
                       color=shades(item["batch"] % 10), alpha=0.55 if transfer else 0.9,
                       hatch="///" if transfer else None, edgecolor="black", linewidth=0.4)
        gantt.set_yticks(range(len(rows)), rows)
        gantt.invert_yaxis()
        gantt.set_xlim(0, found["window_ms"] * 1.02 or 1)
        gantt.set_xlabel(f"ms from the first traced batch's start ({batches} batches; colour: batch, "
                         "hatched: transfer, blank: waiting)")
        gantt.grid(axis="y", visible=False)
        attribution = attribution_of(r)
        if attribution is not None:
            left = 0.0
            pieces = [("ideal", attribution["ideal_ms"]), *((k, attribution["lost_ms"].get(k) or 0.0) for k in LOSSES)]
            for i, (name, value) in enumerate(pieces):
                width = max(value, 0.0)  # a negative loss (faster together than alone) is not drawn
                bar.barh(0, width, left=left, height=0.6, color=colormaps["Set2"](i), label=f"{name} {value:.3g} ms")
                left += width
            bar.axvline(attribution["reference_ms"], color="black", linestyle="--",
                        label=f"{attribution['reference']} {attribution['reference_ms']:.3g} ms")
            bar.set_yticks([])
            bar.set_xlabel("wall time per batch [ms]")
            bar.legend(loc="upper center", bbox_to_anchor=(0.5, -0.55), ncol=3)
        else:
            bar.set_visible(False)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{r['model']}-{r['device']}-b{r['batch_size']}-{r.get('run_id', '')}")
        title = f"Split timeline: {r['model']} on {r['device']} ({(r.get('split') or {}).get('mode')}), " \
                f"batch {r['batch_size']}"
        plots.append(Plot(f"timeline-{name.strip('-')}", title,
                          (attribution_line(r) or "") + ". Who works, who waits and the transfers over the traced "
                          "batches of the real execution; below, the wall time per batch as the ideal parallel time "
                          "plus what was lost.", fig))
    return plots


def make_plots(records: Sequence[Record], samples: dict[tuple[str, str], np.ndarray]) -> list[Plot]:
    """Every plot of the report. `records` carry `run_id`; `samples` maps (run_id, key) to call times in ns."""
    import matplotlib

    palette = Palette()
    kw = {
        "multi_run": len({r.get("run_id") for r in records}) > 1,
        "multi_threads": len({r["threads"] for r in records}) > 1,
    }
    with matplotlib.rc_context(RC):
        return [
            latency_vs_batch(records, palette, **kw),
            pareto(records, palette, **kw),
            energy(records, palette, **kw),
            price(records, palette, **kw),
            latency_distribution(records, samples, palette, **kw),
            *confusion(records, **kw),
            *load_plots(records, palette, **kw),
            *timelines(records, **kw),
        ]


def to_svg(fig: Figure, salt: str) -> str:
    """The figure as an <svg> element to inline (ids made unique per figure by `salt`)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({**RC, "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def write_png(plots: Sequence[Plot], folder: Path) -> list[Path]:
    """Each drawn plot as FOLDER/NAME.png (150 dpi)."""
    import matplotlib

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.rc_context(RC):
        for plot in plots:
            if plot.figure is not None:
                path = folder / f"{plot.name}.png"
                plot.figure.savefig(path, dpi=150)
                written.append(path)
    return written
