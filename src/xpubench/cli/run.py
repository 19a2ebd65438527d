"""`xpubench run`: measure models on backends and store every cell."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from xpubench.cli.options import (
    add_measure_options,
    add_results_option,
    batch_axis_option,
    check_output_file,
    input_value_option,
    int_range_option,
    measure_config,
    name_list,
    pin_cpus,
    positive_int_list,
    precision_list,
    shape_option,
)
from xpubench.errors import UsageError
from xpubench.run.exits import epilog
from xpubench.run.limits import DEFAULT_CELL_TIMEOUT_S, DEFAULT_REPEATS

if TYPE_CHECKING:
    from xpubench.report.progress import ProgressBar
    from xpubench.run.session import Session

DEFAULT_MODELS = ("dense1", "conv3dense1")
DEFAULT_BACKENDS = ("onnxruntime", "litert")
# Options --resume accepts besides RUN_ID: the rest come from the run's stored request.
RESUME_OPTIONS = frozenset({"resume", "results", "json", "debug", "command", "execute", "cluster"})


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="measure models on backends (default: the built-in suite)",
        description="Measure latency, throughput, accuracy and size of each model on each backend. "
        "With no MODEL: dense1 and conv3dense1 on onnxruntime and litert at batch 1 and 32.",
        epilog=epilog(),
    )
    p.add_argument(
        "models", nargs="*", metavar="MODEL", help="zoo name (xpubench zoo) or a .onnx/.tflite/.keras/.pt2 file"
    )
    p.add_argument("--backend", type=name_list, default=None, metavar="B,...",
                   help="backends, each optionally with options (litert:xnnpack=off, torch:mode=compile), "
                   "or 'all': every backend, option and device (default: onnxruntime,litert); or a split over "
                   "parts joined by +, each BACKEND[:DEVICE][:PRECISION]@CPUS as `xpubench split` takes them: "
                   "split:data:onnxruntime@0+litert@1 (each batch divided between the parts, executor=process "
                   "for processes), split:pipeline:onnxruntime@0+litert@1:cut=TENSOR (the graph cut, one stage "
                   "per part; cut= once per cut). A split's parts keep their own devices and precisions")
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
    p.add_argument("--batch-axis", type=batch_axis_option, action="append", default=[], metavar="NAME=AXIS",
                   help="the axis of input NAME that holds the batch, where the graph does not name it (e.g. "
                   "state=1 for a [2,B,128] recurrent state), or NAME=none for an input fed the same in every call")
    p.add_argument("--input", type=input_value_option, action="append", default=[], metavar="NAME=VALUE",
                   help="feed input NAME a fixed number (sample_rate=16000) or array (NAME=FILE.npy) in every "
                   "call, never batched")
    p.add_argument("--int-range", type=int_range_option, action="append", default=[], metavar="NAME=LOW:HIGH",
                   help="draw integer input NAME's random values from LOW..HIGH, both included (default: 0:9)")
    p.add_argument(
        "--batch", type=positive_int_list, default=(1, 32), metavar="N,...", help="batch sizes (default: 1,32)"
    )
    p.add_argument("--threads", type=positive_int_list, default=(1,), metavar="N,...",
                   help="intra-op threads per runtime (default: 1)")
    p.add_argument("--precision", type=precision_list, default=("fp32",), metavar="P,...",
                   help="fp32, fp16, bf16, int8-dynamic, int8, uint8, fixed<W,I>, or 'all': every precision "
                   "of each backend (default: fp32)")
    add_measure_options(p)
    p.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, metavar="R",
                   help="measure each single-stream cell in R worker sessions, interleaved with the other cells; "
                   "its median's 95%% interval is computed across them, so that it covers what a rerun gives "
                   f"(--runs and the times are the cell's, shared by its repeats) (default: {DEFAULT_REPEATS})")
    p.add_argument("--ci-target", type=float, default=None, metavar="F",
                   help="add repeats until the median's 95%% interval is within +-F (e.g. 0.01), or --max-time "
                   "is spent")
    p.add_argument("--scenario", type=name_list, default=("single-stream",), metavar="S,...",
                   help="how load is applied: single-stream (default), batch-sweep, offline, server, "
                   "mlperf-singlestream, mlperf-multistream, mlperf-server, mlperf-offline")
    p.add_argument("--timing", type=name_list, default=("end-to-end",), metavar="T,...",
                   help="end-to-end (default: host arrays in, host arrays out, the handover timed) and/or compute "
                   "(the runtime's compute alone, inputs already in its own tensors and outputs left there, as "
                   "the vendors' tools time it: onnxruntime, openvino, litert, torch)")
    p.add_argument("--qps", type=float, default=None, metavar="Q",
                   help="server: Poisson arrivals per second; mlperf-server: LoadGen's target "
                   "(default: calibrated by a short probe)")
    p.add_argument("--bound-ms", type=float, default=10.0, metavar="MS",
                   help="server and mlperf-server: the p99 latency bound in milliseconds (default: 10)")
    p.add_argument("--tdp", type=float, default=None, metavar="W",
                   help="the processor's TDP in watts, when the catalogue does not know it")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the cells as JSON")
    p.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT_S, metavar="S",
                   help="each cell runs in a worker process of its own; stop it after S seconds, a failed row "
                   f"(default: {DEFAULT_CELL_TIMEOUT_S:g})")
    p.add_argument("--pin", default=None, metavar="CPUS",
                   help="run every worker on these CPUs only, e.g. 0 or 0-1 or 0,2 (default: no pinning)")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="measure the cells on a Dask cluster: the scheduler's address (tcp://host:8786), or "
                   "local:N for N worker processes on this machine; workers offer gpu and edgetpu as resources "
                   "(dask worker ADDRESS --nthreads 1 --resources \"gpu=1\"). Needs xpubench[cluster]")
    p.add_argument("--resume", default=None, metavar="RUN_ID",
                   help="finish an interrupted run: measure the cells of its stored request that it lacks")
    add_results_option(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from xpubench.report.progress import ProgressBar
    from xpubench.run.session import Session

    progress = ProgressBar(sys.stderr)  # the stream now, not the one at import (tests swap it)
    check_output_file(args.json, "--json")
    if args.resume is not None:
        given = _options_given(args)
        if args.models or given:
            dropped = ", ".join([*(["MODEL"] if args.models else []), *given])
            raise UsageError(f"--resume measures the run's stored request: drop {dropped}")
        with Session.resume(args.results, args.resume, progress.say, connect=_connect(progress),
                            cluster=args.cluster) as session:
            progress.say(f"resuming run {args.resume}: {session.cell_count} cells, results in {session.store.path}")
            return measure_session(args, session, progress)
    matrix = _matrix(args)
    pin = pin_cpus(args.pin)
    if pin and args.cluster:
        raise UsageError("--pin sets this machine's CPUs, not a cluster's: pin each dask worker instead "
                         "(taskset -c CPUS dask worker ...) and drop --pin")
    command = shlex.join(["xpubench", *sys.argv[1:]])
    with contextlib.ExitStack() as stack:
        launcher = stack.enter_context(_connect(progress)(args.cluster)) if args.cluster else None
        # Users' files are checked first (in a worker), so a bad one fails before anything is stored;
        # zoo models resolve (and train on first use) inside the sweep, under its progress bar.
        session = stack.enter_context(Session.start(args.results, [matrix], command, cell_timeout_s=args.cell_timeout,
                                                    pin=pin, say=progress.say, launcher=launcher))
        where = f" on the cluster {args.cluster}" if args.cluster else ""
        progress.say(f"run {session.run_id}: {session.cell_count} cells{where}, results in {session.store.path}")
        return measure_session(args, session, progress)


def _connect(progress: ProgressBar):  # -> Callable[[str], Launcher]
    """Connects to a cluster when a run asks for one (Dask is imported then only)."""

    def connect(cluster: str):
        from xpubench.cluster import connect

        progress.say(f"connecting to the cluster {cluster}")
        return connect(cluster, progress.say)

    return connect


def _matrix(args: argparse.Namespace):  # -> Matrix
    from xpubench.backends import backend_names
    from xpubench.models.zoo import expand
    from xpubench.run.matrix import Matrix
    from xpubench.scenarios import ScenarioConfig

    backends = args.backend or DEFAULT_BACKENDS
    everything = backends == ("all",)
    if everything:
        backends = tuple(backend_names())
    if args.tdp is not None and args.tdp <= 0:
        raise UsageError(f"--tdp must be a positive number of watts, got {args.tdp}")
    try:
        matrix = Matrix(
            models=expand(args.models) or DEFAULT_MODELS,
            backends=backends,
            batch_sizes=args.batch,
            threads=args.threads,
            precisions=args.precision,
            devices=args.device or (("all",) if everything else None),
            every_option=everything,
            measure=measure_config(args, args.ci_target),
            tdp_w=args.tdp,
            scenarios=args.scenario,
            scenario=ScenarioConfig(qps=args.qps, bound_ms=args.bound_ms),
            data=_data_file(args),
            shapes=tuple(sorted(dict(args.shape).items())),
            batch_axes=tuple(sorted(dict(args.batch_axis).items())),
            input_values=tuple(sorted(dict(args.input).items())),
            int_ranges=tuple(sorted(dict(args.int_range).items())),
            repeats=args.repeats,
            timings=_timings(args.timing),
        )
        matrix.check_choices()  # an unknown backend or precision is refused before anything is stored
        return matrix
    except ValueError as exc:
        if hasattr(exc, "setting"):  # InvalidSetting: the CLI names the option
            raise
        raise UsageError(str(exc)) from None


def _timings(names: tuple[str, ...]) -> tuple[str, ...]:
    from xpubench.core.cell import TIMING_MODES

    for name in names:
        if name not in TIMING_MODES:
            raise UsageError(f"unknown timing {name!r}: choose from {', '.join(TIMING_MODES)}")
    return tuple(dict.fromkeys(names))


def measure_session(args: argparse.Namespace, session: Session, progress: ProgressBar) -> int:
    """Measure the session's cells, then print the table and write --json; Ctrl-C and SIGTERM keep what is stored."""
    from xpubench.report.table import render_text
    from xpubench.run.sweep import SweepEvents

    ending = session.measure(SweepEvents(progress.say, progress.cell_started, progress.cell_done,
                                         progress.cells_running))
    if ending.status == "interrupted":
        progress.say(f"\ninterrupted: the cells measured so far are stored in run {ending.run_id}; "
                     f"`xpubench run --resume {ending.run_id}` measures the rest")
    records = session.store.cells(ending.run_id)
    print(render_text(records))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"run_id": ending.run_id, "cells": records}, indent=2))
    return ending.exit_code


def _options_given(args: argparse.Namespace) -> list[str]:
    """The options set to something other than their defaults, as --names."""
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    defaults = vars(parser.parse_args(["run"]))
    return [
        f"--{name.replace('_', '-')}"
        for name, value in vars(args).items()
        if name not in RESUME_OPTIONS and name in defaults and name != "models" and value != defaults[name]
    ]


def _data_file(args: argparse.Namespace):  # -> DataFile | None
    from xpubench.data.files import DataFile

    if args.data is None:
        if args.x != "x" or args.y is not None:
            raise UsageError("--x and --y name arrays in a data file: give the file with --data FILE")
        return None
    return DataFile(args.data, x=args.x, y=args.y or "y", y_given=args.y is not None)

