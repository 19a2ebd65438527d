"""`xpubench split`: one model split across unlike parts (data-parallel or a layer pipeline), measured as
cells and stored like `run`'s.

A given split (data, or a pipeline with its cuts) is a matrix's cell, `run --backend split:...` (hetero.spec),
measured through a Session like any cell. The planner (auto) measures plans it chooses from one shared profile
while it runs, so no matrix names them: it is stored through the store directly, the model still prepared by the
sweep (trained, its float32 reference cached) and the plans measured in the launcher's worker.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from xpubench.cli.options import (
    add_measure_options,
    add_results_option,
    check_output_file,
    measure_config,
    positive_int_list,
)
from xpubench.errors import UsageError
from xpubench.run.exits import epilog

SPLIT_TIMEOUT_S = 1800.0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split",
        help="split one model across unlike devices: data-parallel or a layer pipeline",
        description="Run MODEL split across parts, each BACKEND[:DEVICE][:PRECISION]@CPUS pinned to its own "
        "CPUs: data-parallel (each batch divided in proportion to the parts' throughput), a layer pipeline (the "
        "ONNX graph cut at --cut tensors, one stage per part), or auto (the planner profiles every segment on "
        "every part and picks the placement). Each split is measured and stored as a cell.",
        epilog=epilog(),
    )
    p.add_argument("model", metavar="MODEL", help="zoo name (xpubench zoo) or a .onnx/.tflite/.keras/.pt2 file")
    p.add_argument("--devices", required=True, metavar="PART,...",
                   help="the parts, e.g. onnxruntime:cpu@0,litert:cpu@1 (a CPU list inside a part: 0-1)")
    p.add_argument("--mode", choices=("data", "pipeline", "auto"), default="auto",
                   help="data-parallel, layer pipeline, or let the planner choose (default: auto)")
    p.add_argument("--cut", default=None, metavar="TENSOR,...",
                   help="pipeline: cut the graph at these tensors (default: the planner chooses)")
    p.add_argument("--carry-skips", action="store_true",
                   help="allow cuts inside a skip connection or branch: they carry every live tensor")
    p.add_argument("--list-cuts", action="store_true", help="print the valid and refused cut points and stop")
    p.add_argument("--objective", choices=("latency", "throughput"), default="throughput",
                   help="what the planner optimises (default: throughput)")
    p.add_argument("--executor", choices=("thread", "process"), default="thread",
                   help="data-parallel parts in pinned native threads or in processes with shared memory "
                   "(default: thread)")
    p.add_argument("--batch", type=positive_int_list, default=(32,), metavar="N", help="batch size (default: 32)")
    add_measure_options(p)
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the cells as JSON")
    add_results_option(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from xpubench.hetero.parts import parse_parts
    from xpubench.hetero.task import SplitRequest
    from xpubench.run.matrix import CellSettings

    check_output_file(args.json, "--json")
    try:
        parts = parse_parts(args.devices)
    except ValueError as exc:
        raise UsageError(f"--devices {exc}") from None
    for part in parts:
        reason = part.unavailable()
        if reason:
            raise UsageError(f"--devices {part.spec}: {reason}")
    if len(args.batch) != 1:
        raise UsageError("--batch takes one batch size for a split")
    cuts = tuple(c.strip() for c in (args.cut or "").split(",") if c.strip())
    if cuts and args.mode == "data":
        raise UsageError("--cut cuts a pipeline: drop it, or use --mode pipeline")
    if args.mode == "pipeline" and cuts and len(cuts) + 1 != len(parts):
        raise UsageError(f"{len(cuts)} cut{'s' if len(cuts) != 1 else ''} make {len(cuts) + 1} stages: give "
                         f"{len(cuts) + 1} parts in --devices, one per stage")
    if args.mode == "data" and len(parts) < 2:
        raise UsageError("data-parallel needs at least two parts in --devices")
    from xpubench.hardware import catalogue, host

    settings = CellSettings(measure_config(args), catalogue.cpu_tdp_w(host.cpu_model()))
    request = SplitRequest(args.model, parts, args.mode, cuts, args.objective, args.batch[0], args.executor,
                           args.carry_skips, args.list_cuts, settings)
    if args.list_cuts or args.carry_skips or args.mode == "auto" or (args.mode == "pipeline" and not cuts):
        return _run(args, request)  # the planner, or a cut `run` does not take
    from xpubench.hetero.spec import SplitSpec

    try:
        spec = SplitSpec(args.mode, parts, cuts, args.executor if args.mode == "data" else "thread")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return _run_cell(args, request, spec)


def _run_cell(args: argparse.Namespace, request, spec) -> int:  # SplitRequest, SplitSpec
    """A given split is a matrix's cell, measured and stored as `run --backend SPEC` does it (`xpubench run
    --resume` finishes it), in one repeat of the split's stop rules."""
    from xpubench.cli.run import measure_session
    from xpubench.report.progress import ProgressBar
    from xpubench.run.matrix import Matrix
    from xpubench.run.session import Session

    progress = ProgressBar(sys.stderr)
    matrix = Matrix(models=(request.model,), backends=(spec.text,), batch_sizes=(request.batch,),
                    measure=request.settings.measure, repeats=1)
    command = shlex.join(["xpubench", *sys.argv[1:]])
    with Session.start(args.results, [matrix], command, cell_timeout_s=SPLIT_TIMEOUT_S, say=progress.say,
                       extra={"split": _request_json(request)}) as session:
        progress.say(f"run {session.run_id}: {spec.text}, results in {session.store.path}")
        return measure_session(args, session, progress)


def _run(args: argparse.Namespace, request) -> int:  # request: SplitRequest
    from xpubench.hetero.task import SplitTask
    from xpubench.report.table import render_text
    from xpubench.run.environment import collect
    from xpubench.run.launcher import ProcessLauncher
    from xpubench.run.matrix import Matrix
    from xpubench.run.sweep import Sweep
    from xpubench.store import ResultStore

    def say(message: str) -> None:
        print(message, file=sys.stderr)

    with ProcessLauncher() as launcher, Sweep(launcher, SPLIT_TIMEOUT_S, say) as sweep:
        prepared = sweep.prepare(Matrix(models=(request.model,), backends=("onnxruntime",)), request.model, cells=())
        if isinstance(prepared, str):
            raise UsageError(prepared)
        outcome = launcher.run(SplitTask(prepared, request), SPLIT_TIMEOUT_S, say)
        if outcome.kind == "usage":
            raise UsageError(outcome.value)
        if not outcome.ok:
            raise UsageError(f"the split failed: {outcome.value}")
        answer = outcome.value
        for line in answer.report:
            print(line)
        if request.list_cuts:
            return 0
        command = shlex.join(["xpubench", *sys.argv[1:]])
        with ResultStore(args.results) as store:
            threads = sorted({m.result.cell.threads for m in answer.measured})
            run_id = store.start_run(collect(threads), command=command,
                                     request={"split": _request_json(request)})
            store_split(store, run_id, outcome)
            from xpubench.hardware.host import load_average

            store.finish_run(run_id, "finished", load_average())
            records = store.cells(run_id)
    print(render_text(records))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"run_id": run_id, "cells": records}, indent=2, default=str))
    from xpubench.run.exits import exit_code

    for record in records:
        if record["status"] != "ok":
            print(f"xpubench split: {record['device']}: {record['status']}: {record['reason']}", file=sys.stderr)
    return exit_code(r["status"] for r in records)


def store_split(store, run_id: str, outcome) -> None:  # store: ResultStore, outcome: a SplitTask's TaskOutcome
    """Each measured split of the task's answer as a cell of the run, with its worker and its `split` record."""
    worker = outcome.info.record() if outcome.info else {"affinity": None, "worker": None}
    for item in outcome.value.measured:
        store.add_cell(run_id, item.result, {**worker, "split": item.split})


def _request_json(request) -> dict:
    from xpubench.run.matrix import matrix_to_json

    found = matrix_to_json(request)
    found["parts"] = [p.spec for p in request.parts]
    return found
