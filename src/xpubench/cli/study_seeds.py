"""`xpubench study seeds`: the benchmarking slides' tables measured on this machine, stored as one run."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable

from xpubench.cli.options import add_cell_timeout_option, add_results_option
from xpubench.errors import UsageError
from xpubench.run.exits import epilog


def add_parser(studies: argparse._SubParsersAction) -> None:
    p = studies.add_parser(
        "seeds",
        help="the benchmarking slides' tables measured here (LArTPC, edge networks, scans)",
        description="Measure the source studies' three tables on this machine, in their layout, with the "
        "studies' own figures beside them: (a) ResNet-50 V2 and DenseNet-169 on LArTPC images, TensorFlow and "
        "LiteRT fp32 / int8-dynamic / fp16 / int8, with the K-function; (b) dense1, conv3dense1 and MobileNetV2 "
        "at batch 1 and 32 per runtime and precision; (c) the matmul and dense-layer scans by side length. "
        "Stored as one run (xpubench show / report read it). Each cell is measured for at least 20 calls and "
        "0.5 s, in a worker process of its own; about 19 minutes on 2 cores the first time (the models train "
        "then, two at a time), less once they are cached.",
        epilog=epilog(),
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--full", action="store_true",
                      help="the studies' sizes (200x200 LArTPC images, MobileNetV2 at alpha 1): trains for hours")
    size.add_argument("--quick", action="store_true",
                      help="the tiniest sizes and a few cells, a minute or two (a smoke test, not the study)")
    p.add_argument("--tdp", type=float, default=None, metavar="W",
                   help="the CPU's TDP in watts for the K-function, when the catalogue does not know it")
    add_cell_timeout_option(p)
    p.add_argument("--resume", default=None, metavar="RUN_ID", help="measure the cells an interrupted study run lacks")
    p.add_argument("--show", default=None, metavar="RUN_ID", help="print a stored study run's tables, measure nothing")
    add_results_option(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from xpubench.store import ResultStore
    from xpubench.studies.seeds import plan, render, tables

    if args.show is not None and args.resume is not None:
        raise UsageError("--show prints a stored run, --resume measures one: give one of them")
    if args.show is not None:
        if args.full or args.quick or args.tdp is not None:
            raise UsageError("--show prints a stored run as it was measured: drop --full, --quick and --tdp")
        with ResultStore(args.results, create=False) as store:
            request = _check_study_run(store.run(args.show), args.show)
            print(render(tables(store.cells(args.show), plan(request["mode"], request.get("tdp_w")))))
        return 0
    if args.tdp is not None and not args.tdp > 0:
        raise UsageError(f"--tdp must be a positive number of watts, got {args.tdp:g}")
    return _measure(args)


def _measure(args: argparse.Namespace) -> int:
    import time

    from xpubench.report.progress import ProgressBar
    from xpubench.run.session import Session
    from xpubench.run.sweep import SweepEvents
    from xpubench.studies.seeds import plan, render, tables

    progress = ProgressBar(sys.stderr)
    started = time.monotonic()
    if args.resume is not None:
        if args.full or args.quick or args.tdp is not None:
            raise UsageError("--resume measures the run's stored request: drop --full, --quick and --tdp")
        session = Session.resume(args.results, args.resume, progress.say, study=args.study)
    else:
        mode = "full" if args.full else "quick" if args.quick else "default"
        study = plan(mode, args.tdp)
        command = shlex.join(["xpubench", *sys.argv[1:]]) if sys.argv[1:2] == ["study"] else "xpubench study"
        _say_training(study.models(), progress.say)
        session = Session.start(args.results, study.matrices, command, cell_timeout_s=args.cell_timeout,
                                say=progress.say, extra={"study": args.study, "mode": mode, "tdp_w": args.tdp})
    with session as running:
        request = running.store.run(running.run_id)["request"]
        study = plan(request["mode"], request.get("tdp_w"))
        progress.say(f"study {args.study} ({study.mode}): run {running.run_id}, {running.cell_count} cells, "
                     f"results in {running.store.path}")
        ending = running.measure(SweepEvents(progress.say, progress.cell_started, progress.cell_done))
        if ending.status == "interrupted":
            progress.say(f"\ninterrupted: the cells measured so far are stored in run {ending.run_id}; "
                         f"`xpubench study {args.study} --resume {ending.run_id}` measures the rest")
        print(render(tables(running.store.cells(ending.run_id), study)))
    print(f"\nrun {ending.run_id} ({ending.status}, {time.monotonic() - started:.0f} s): xpubench show "
          f"{ending.run_id} / xpubench report {ending.run_id} read it; xpubench study {args.study} --show "
          f"{ending.run_id} prints these tables")
    return ending.exit_code


def _check_study_run(run: dict, run_id: str) -> dict:
    request = run.get("request") or {}
    if request.get("study") != "seeds":
        raise UsageError(f"run {run_id} is not a `study seeds` run: `xpubench show {run_id}` shows it")
    return request


def _say_training(models: list[str], say: Callable[[str], None]) -> None:
    """Name the zoo models that train first (on first use), before anything is measured."""
    from xpubench.models.training import untrained as needs_training

    untrained = [name for name in models if needs_training(name)]
    if untrained:
        say(f"not trained yet, trained on first use (once, then cached): {', '.join(untrained)}. At the default "
            "size on 2 idle cores: mobilenet-v2 about 2 minutes, resnet50v2 and densenet169 about 5 minutes, "
            "trained side by side, the rest seconds; each prints its own estimate when it starts")

