"""`xpubench show`: a stored run as a table, JSON, CSV, markdown or parquet."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xpubench.cli.options import add_results_option
from xpubench.errors import UsageError

FORMATS = ("table", "json", "csv", "markdown", "parquet")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "show",
        help="show a stored run (default: the latest)",
        description="Show a stored run. json: the cell records as stored, with the environment; csv and "
        "parquet: one row per cell with the columns of xpubench.load_results(); markdown and table: the "
        "console table (best cell per model marked *).",
    )
    p.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the run to show (default: the latest)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="write to FILE instead of standard output (parquet needs it)")
    p.add_argument("--list", action="store_true", help="list the stored runs instead")
    add_results_option(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from xpubench.report.table import render_markdown, render_text
    from xpubench.store import ResultStore

    if args.format == "parquet" and args.out is None:
        raise UsageError("parquet is a binary format: give --out FILE.parquet")
    with ResultStore(args.results, create=False, readonly=True) as store:
        if args.list:
            for run in store.runs():
                print(
                    f"{run['run_id']}  {run['status']:<11}  {run['cells']:>3} cells  "
                    f"{run['started_at']}  {run['command']}"
                )
            return 0
        run_id = args.run_id or store.latest_run_id()
        run = store.run(run_id)
        records = store.cells(run_id)
    if args.format in ("csv", "parquet"):
        from xpubench.report.frame import frame

        df = frame(records, run)
        if args.format == "parquet":
            _prepare(args.out)
            df.to_parquet(args.out, index=False)
            print(args.out)
            return 0
        text = df.to_csv(index=False)
    elif args.format == "json":
        text = json.dumps({"run_id": run_id, "cells": records}, indent=2) + "\n"
    elif args.format == "markdown":
        text = render_markdown(records) + "\n"
    else:
        bold = args.out is None and sys.stdout.isatty()
        text = f"run {run_id} ({run['status']}, started {run['started_at']}): {run['command']}\n"
        text += render_text(records, bold=bold) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        _prepare(args.out)
        args.out.write_text(text, encoding="utf-8")
        print(args.out)
    return 0


def _prepare(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"--out {path} is a folder: give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
