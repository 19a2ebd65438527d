"""`xpubench study hetero`: the heterogeneous-platforms study measured here and stored as one run."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from xpubench.cli.options import add_cell_timeout_option, add_results_option, check_output_file
from xpubench.errors import UsageError
from xpubench.run.exits import epilog


def add_parser(studies: argparse._SubParsersAction) -> None:
    p = studies.add_parser(
        "hetero",
        help="the heterogeneous-platforms study: which device suits which model, data parallelism, layer "
        "sharding, its takeaways checked",
        description="Measure the heterogeneous-platforms study's experiments on this machine over two parts "
        "(BACKEND[:DEVICE][:PRECISION]@CPUS, as `xpubench split` takes them): each part alone on a small dense "
        "network and an AlexNet-like CNN per batch, each network split data-parallel across both parts, and the "
        "CNN sharded into two stages where the planner chooses, its prediction beside the measurement. Prints "
        "the tables beside what the study says and checks the study's takeaways one by one against the stored "
        "figures. Stored as one run (xpubench show / report / compare read it). The matrix and dense-layer "
        "scans per device are `xpubench study seeds`' table (c).",
        epilog=epilog(),
    )
    p.add_argument("--quick", action="store_true",
                   help="the tiniest sizes and a few cells, about a minute (a smoke test, not the study)")
    p.add_argument("--devices", default=None, metavar="PART,PART",
                   help="the two parts (default: onnxruntime:cpu@0,litert:cpu@1, two CPU runtimes on separate "
                   "cores standing in for the study's Edge TPU and GPU; with an NVIDIA GPU, "
                   "onnxruntime:cpu@0,onnxruntime:cuda)")
    add_cell_timeout_option(p)
    p.add_argument("--show", default=None, metavar="RUN_ID", help="print a stored study run's tables, measure nothing")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write the cells and the checked takeaways as JSON")
    add_results_option(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from xpubench.studies.hetero import plan

    check_output_file(args.json, "--json")
    if args.show is not None:
        if args.quick or args.devices:
            raise UsageError("--show prints a stored run as it was measured: drop --quick and --devices")
        from xpubench.store import ResultStore

        with ResultStore(args.results, create=False) as store:
            request = store.run(args.show).get("request") or {}
            if request.get("study") != "hetero":
                raise UsageError(f"run {args.show} is not a `study hetero` run: `xpubench show {args.show}` shows it")
            _print(args, args.show, store.cells(args.show), plan(request["mode"], request["devices"]))
        return 0
    devices = args.devices or _default_devices()
    try:
        study = plan("quick" if args.quick else "default", devices, _tdp())
    except ValueError as exc:
        raise UsageError(f"--devices {exc}") from None
    for part in study.parts:
        reason = part.unavailable()
        if reason:
            raise UsageError(f"--devices {part.spec}: {reason}")
    return _measure(args, study)


def _default_devices() -> str:
    """CPU and CUDA where ONNX Runtime reaches a GPU; two CPU runtimes on two cores otherwise."""
    from xpubench.hardware import host
    from xpubench.hetero.parts import parse_parts
    from xpubench.studies.hetero import CPU_PARTS, GPU_PARTS

    if not any(p.unavailable() for p in parse_parts(GPU_PARTS)):
        return GPU_PARTS
    return CPU_PARTS if host.logical_cpus() >= 2 else CPU_PARTS.replace("@0", "").replace("@1", "")


def _tdp() -> float | None:
    from xpubench.hardware import catalogue, host

    return catalogue.cpu_tdp_w(host.cpu_model())


def _measure(args: argparse.Namespace, study) -> int:  # study: studies.hetero.Plan
    import time

    from xpubench.report.progress import ProgressBar
    from xpubench.run.session import Session
    from xpubench.run.sweep import SweepEvents

    progress = ProgressBar(sys.stderr)
    started = time.monotonic()
    command = shlex.join(["xpubench", *sys.argv[1:]]) if sys.argv[1:2] == ["study"] else "xpubench study hetero"
    extra = {"study": "hetero", "mode": study.mode, "devices": ",".join(p.spec for p in study.parts)}
    with Session.start(args.results, study.matrices, command, cell_timeout_s=args.cell_timeout, say=progress.say,
                       extra=extra) as running:
        progress.say(f"study hetero ({study.mode}) over {extra['devices']}: run {running.run_id}, "
                     f"{running.cell_count} cells and {len(study.splits())} planned split, results in "
                     f"{running.store.path}")
        # The planner's split first, stored in the session's run; then the session measures the matrix cells
        # (each part alone, the data-parallel splits) and finishes the run, its exit code from every cell.
        try:
            _measure_splits(running, study, progress.say)
        except KeyboardInterrupt:
            from xpubench.hardware.host import load_average
            from xpubench.run.exits import EXIT_INTERRUPTED

            running.store.finish_run(running.run_id, "interrupted", load_average())
            progress.say(f"\ninterrupted: the splits measured so far are stored in run {running.run_id}")
            return EXIT_INTERRUPTED
        ending = running.measure(SweepEvents(progress.say, progress.cell_started, progress.cell_done))
        _print(args, ending.run_id, running.store.cells(ending.run_id), study)
    print(f"\nrun {ending.run_id} ({ending.status}, {time.monotonic() - started:.0f} s): xpubench show "
          f"{ending.run_id} / xpubench report {ending.run_id} read it; xpubench study hetero --show "
          f"{ending.run_id} prints these tables")
    return ending.exit_code


def _measure_splits(running, study, say) -> None:  # running: Session, study: studies.hetero.Plan
    """Each split of the study through the split's own task in the session's launcher, stored in its run."""
    from xpubench.cli.split import SPLIT_TIMEOUT_S, store_split
    from xpubench.core.cell import CellResult
    from xpubench.hetero.cell import split_cell
    from xpubench.hetero.task import SplitRequest, SplitTask
    from xpubench.run.matrix import CellSettings, Matrix

    settings = CellSettings(study.measure, study.tdp_w)
    for label, model, mode, batch in study.splits():
        say(f"{label}: {model} at batch {batch}")
        prepared = running.sweep.prepare(Matrix(models=(model,), backends=("onnxruntime",)), model, cells=())
        if isinstance(prepared, str):
            running.store.add_cell(running.run_id, CellResult.not_measured(
                split_cell(model, study.parts, batch, mode), "failed", prepared), {"split": {}})
            continue
        request = SplitRequest(model, study.parts, mode, batch=batch, settings=settings)
        outcome = running.launcher.run(SplitTask(prepared, request), SPLIT_TIMEOUT_S, say)
        if not outcome.ok:
            running.store.add_cell(running.run_id, CellResult.not_measured(
                split_cell(model, study.parts, batch, mode), "failed", str(outcome.value)), {"split": {}})
            continue
        for line in outcome.value.report:
            say(f"  {line}")
        store_split(running.store, running.run_id, outcome)


def _print(args: argparse.Namespace, run_id: str, records: list[dict], study) -> None:
    from xpubench.studies.hetero import render, takeaways

    print(render(records, study))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        checked = [{"claim": v.claim, "verdict": v.verdict, "why": v.why} for v in takeaways(records, study)]
        args.json.write_text(json.dumps({"run_id": run_id, "cells": records, "takeaways": checked}, indent=2,
                                        default=str))
