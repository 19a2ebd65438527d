"""`xpubench run`: measure models on backends and store every cell."""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
from pathlib import Path

from xpubench.cli.options import (
    add_results_option,
    name_list,
    positive_int_list,
    precision_list,
    shape_option,
)
from xpubench.errors import UsageError

DEFAULT_MODELS = ("dense1", "conv3dense1")
DEFAULT_BACKENDS = ("onnxruntime", "litert")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="measure models on backends (default: the built-in suite)",
        description="Measure latency, throughput, accuracy and size of each model on each backend. "
        "With no MODEL: dense1 and conv3dense1 on onnxruntime and litert at batch 1 and 32.",
    )
    p.add_argument(
        "models", nargs="*", metavar="MODEL", help="zoo name (xpubench zoo) or a .onnx/.tflite/.keras/.pt2 file"
    )
    p.add_argument("--backend", type=name_list, default=None, metavar="B,...",
                   help="backends, each optionally with options (litert:xnnpack=off, torch:mode=compile), "
                   "or 'all': every backend, option and device (default: onnxruntime,litert)")
    p.add_argument("--device", type=name_list, default=None, metavar="D,...",
                   help="devices (cpu, cuda, ...) or 'all' (default: where each backend runs by default)")
    p.add_argument("--data", type=Path, default=None, metavar="FILE",
                   help="a .npz, HDF5 (.h5) or ROOT (.root) file of inputs x (and labels y) for accuracy, "
                   "fidelity and calibration (default: the zoo model's own held-out data; random inputs from "
                   "the signature for your files)")
    p.add_argument("--x", default="x", metavar="NAME",
                   help="the inputs in --data: an array (.npz), a dataset path (HDF5), or TREE/BRANCH[,BRANCH] "
                   "(ROOT; branches are stacked as features) (default: x)")
    p.add_argument("--y", default=None, metavar="NAME",
                   help="the labels or targets in --data, named as --x (default: y, when there is one)")
    p.add_argument("--shape", type=shape_option, action="append", default=[], metavar="[NAME=]D,D,...",
                   help="the shape of one sample (no batch dimension) of an input with dynamic dimensions")
    p.add_argument(
        "--batch", type=positive_int_list, default=(1, 32), metavar="N,...", help="batch sizes (default: 1,32)"
    )
    p.add_argument("--threads", type=positive_int_list, default=(1,), metavar="N,...",
                   help="intra-op threads per runtime (default: 1)")
    p.add_argument("--precision", type=precision_list, default=("fp32",), metavar="P,...",
                   help="fp32, fp16, bf16, int8-dynamic, int8, uint8, fixed<W,I>, or 'all': every precision "
                   "of each backend (default: fp32)")
    p.add_argument("--runs", type=int, default=100, metavar="N", help="measure at least N calls (default: 100)")
    p.add_argument("--min-time", type=float, default=2.0, metavar="S", help="and at least S seconds (default: 2)")
    p.add_argument("--max-time", type=float, default=60.0, metavar="S", help="but at most S seconds (default: 60)")
    p.add_argument("--warmup-runs", type=int, default=10, metavar="N", help="warm-up calls, at least (default: 10)")
    p.add_argument(
        "--warmup-time", type=float, default=0.5, metavar="S", help="warm-up seconds, at least (default: 0.5)"
    )
    p.add_argument("--ci-target", type=float, default=None, metavar="F",
                   help="stop early once the 95%% CI of the median is within +-F (e.g. 0.01)")
    p.add_argument("--tdp", type=float, default=None, metavar="W",
                   help="the processor's TDP in watts, when the catalogue does not know it")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the cells as JSON")
    add_results_option(p)
    p.set_defaults(execute=execute)


class Stopped(BaseException):
    """SIGTERM arrived: stop like Ctrl-C, keeping what is stored (not an Exception, so no cell's
    error handling can swallow it)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Stopped()


def execute(args: argparse.Namespace) -> int:
    from xpubench.backends import backend_names
    from xpubench.core.measure import MeasureConfig
    from xpubench.report.progress import ProgressBar
    from xpubench.report.table import render_text
    from xpubench.store import ResultStore
    from xpubench.store.environment import collect
    from xpubench.sweep import Matrix, SweepEvents, run_matrix

    backends = args.backend or DEFAULT_BACKENDS
    everything = backends == ("all",)
    if everything:
        backends = tuple(backend_names())
    _check_backends(backends)
    if args.tdp is not None and args.tdp <= 0:
        raise UsageError(f"--tdp must be a positive number of watts, got {args.tdp}")
    try:
        config = MeasureConfig(
            warmup_runs=args.warmup_runs,
            warmup_time_s=args.warmup_time,
            min_runs=args.runs,
            min_time_s=args.min_time,
            max_time_s=args.max_time,
            ci_target=args.ci_target,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    models = tuple(args.models) or DEFAULT_MODELS
    matrix = Matrix(
        models=models,
        backends=backends,
        batch_sizes=args.batch,
        threads=args.threads,
        precisions=args.precision,
        devices=args.device or (("all",) if everything else None),
        every_option=everything,
        measure=config,
        tdp_w=args.tdp,
    )
    from xpubench.models import resolve

    progress = ProgressBar()
    # Users' files are checked now, so a bad one fails before anything is measured; zoo models
    # resolve (and train on first use) inside the sweep, under its progress bar.
    shapes = dict(args.shape)
    data = _data_file(args)
    workloads = {m: resolve(m, progress.say, data, shapes) for m in models if not _is_zoo(m) or data}
    for workload in workloads.values():
        workload.fidelity_inputs()  # a dynamic dimension with no data to fix it is an error now, not per cell

    store = ResultStore(args.results)
    environment = collect(list(args.threads))
    run_id = store.start_run(environment, command=shlex.join(["xpubench", *sys.argv[1:]]))
    progress.say(f"run {run_id}: {len(matrix.cells())} cells, results in {store.path}")
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    status, code = "finished", 0
    try:
        events = SweepEvents(progress.say, progress.cell_started, progress.cell_done)
        run_matrix(matrix, store, run_id, events, workloads=workloads)
    except (KeyboardInterrupt, Stopped) as exc:
        status = "interrupted"
        code = 143 if isinstance(exc, Stopped) else 130
        progress.say(f"\ninterrupted: the cells measured so far are stored in run {run_id}")
    finally:
        signal.signal(signal.SIGTERM, previous)
        from xpubench.hardware.host import load_average

        store.finish_run(run_id, status, load_average())
    records = store.cells(run_id)
    print(render_text(records))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"run_id": run_id, "cells": records}, indent=2))
    store.close()
    return code


def _data_file(args: argparse.Namespace):  # -> DataFile | None
    from xpubench.data.files import DataFile

    if args.data is None:
        if args.x != "x" or args.y is not None:
            raise UsageError("--x and --y name arrays in a data file: give the file with --data FILE")
        return None
    return DataFile(args.data, x=args.x, y=args.y or "y", y_given=args.y is not None)


def _is_zoo(name: str) -> bool:
    from xpubench.models.zoo import ZOO

    return name in ZOO


def _check_backends(specs: tuple[str, ...]) -> None:
    from xpubench.backends import backend_names, get_backend
    from xpubench.sweep import parse_backend

    known = backend_names(include_hidden=True)
    for spec in specs:
        try:
            name, options = parse_backend(spec)
            if name not in known:
                raise ValueError(f"unknown backend {name!r}: choose from {', '.join(backend_names())} or all")
            get_backend(name).resolve_options(options)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
