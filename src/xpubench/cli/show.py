"""`xpubench show`: a stored run as a table, JSON, CSV or markdown."""

from __future__ import annotations

import argparse
import json

from xpubench.cli.options import add_results_option

FORMATS = ("table", "json", "csv", "markdown")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("show", help="show a stored run (default: the latest)")
    p.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the run to show (default: the latest)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--list", action="store_true", help="list the stored runs instead")
    add_results_option(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from xpubench.report.table import render_csv, render_markdown, render_text
    from xpubench.store import ResultStore

    with ResultStore(args.results, create=False) as store:
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
    if args.format == "json":
        print(json.dumps({"run_id": run_id, "cells": records}, indent=2))
    elif args.format == "csv":
        print(render_csv(records), end="")
    elif args.format == "markdown":
        print(render_markdown(records))
    else:
        print(f"run {run_id} ({run['status']}, started {run['started_at']}): {run['command']}")
        print(render_text(records))
    return 0
