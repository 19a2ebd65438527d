"""`xpubench report`: stored runs as one self-contained HTML page and/or PNG plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from xpubench.cli.options import add_results_option
from xpubench.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write an HTML report (and PNG plots) of stored runs (default: the latest)",
        description="Write one self-contained HTML file (it opens offline) with the summary, plots, fidelity, "
        "latency distributions, environment and a sortable table of every cell. With neither --html nor "
        "--png: RESULTS/report-RUN_ID.html.",
    )
    p.add_argument("run_ids", nargs="*", metavar="RUN_ID", help="runs to report (default: the latest)")
    p.add_argument("--html", type=Path, default=None, metavar="FILE", help="write the HTML report to FILE")
    p.add_argument("--png", type=Path, default=None, metavar="DIR", help="write each plot as DIR/NAME.png")
    add_results_option(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from xpubench.report.html import ReportData, write_report
    from xpubench.store import ResultStore

    with ResultStore(args.results, create=False, readonly=True) as store:
        run_ids = list(dict.fromkeys(args.run_ids)) or [store.latest_run_id()]
        data = ReportData.from_store(store, run_ids)
    if not data.records:
        raise UsageError(f"run {', '.join(run_ids)} has no cells to report")
    html = args.html
    if html is None and args.png is None:
        html = args.results / f"report-{'+'.join(run_ids)}.html"
    if html is not None and html.is_dir():
        raise UsageError(f"--html {html} is a folder: give a file name, e.g. {html / 'report.html'}")
    try:
        written = write_report(data, html, args.png)
    except OSError as exc:  # e.g. the default place, a results folder on a read-only mount
        raise UsageError(
            f"cannot write the report to {exc.filename or html}: {exc.strerror}; give --html FILE (or --png DIR) "
            "in a folder you can write to"
        ) from exc
    for path in written:
        print(f"{path.resolve()}  ({path.stat().st_size / 1024:.0f} KiB)")
    return 0
