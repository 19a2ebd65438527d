"""`xpubench train MODEL --workers 1,2`: distributed-training scaling cells (tf.distribute, torch DDP), stored."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xpubench.cli.options import add_results_option, check_output_file, name_list, positive_int_list
from xpubench.errors import UsageError
from xpubench.run.exits import epilog
from xpubench.run.limits import DEFAULT_CELL_TIMEOUT_S

DEFAULT_STRATEGIES = ("torch-ddp", "tf-multiworker")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="measure distributed-training scaling of a zoo model (torch DDP, tf.distribute)",
        description="Train a zoo model (calo-gan: the TPU study's 3D GAN) over 1..N workers with real engines "
        "(torch-ddp: DistributedDataParallel under torchrun; tf-multiworker: MultiWorkerMirroredStrategy; "
        "tf-mirrored: MirroredStrategy over logical CPUs; tf-tpu: TPUStrategy) and store each (strategy, workers, "
        "scaling) cell: step and epoch time, samples/s, efficiency against one worker, the step's breakdown, "
        "a bound verdict, and the generator's validity. --model-scaling adds the all-reduce model's predictions.",
        epilog=epilog(),
    )
    p.add_argument("model", metavar="MODEL", help="a zoo model, e.g. calo-gan:tiny")
    p.add_argument("--workers", type=positive_int_list, default=(1, 2), metavar="N,...",
                   help="worker counts (default: 1,2; 1 is always measured, as the baseline)")
    p.add_argument("--strategy", type=name_list, default=DEFAULT_STRATEGIES, metavar="NAME,...",
                   help="torch-ddp, tf-multiworker, tf-mirrored, tf-tpu (default: torch-ddp,tf-multiworker)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, default=None, metavar="N", help="timed steps per cell (default: 20)")
    length.add_argument("--epochs", type=int, default=None, metavar="E", help="timed epochs per cell instead")
    p.add_argument("--batch", type=int, default=16, metavar="B",
                   help="per-worker batch (weak scaling) or global batch (strong scaling) (default: 16)")
    p.add_argument("--scaling", choices=("weak", "strong", "both"), default="weak")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="intra-op threads per worker (default: CPUs / the largest worker count, at least 1)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the zoo model's)")
    p.add_argument("--input-delay", type=float, default=0.0, metavar="S",
                   help="sleep S seconds in each step's input: a starved pipeline, to see an input-bound verdict")
    p.add_argument("--checksums", type=int, default=0, metavar="K",
                   help="record every worker's weight checksum after the first K steps")
    p.add_argument("--kill-worker", default=None, metavar="RANK:STEP",
                   help="fault injection: worker RANK kills itself at STEP (the cell must end failed, not hang)")
    p.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT_S, metavar="S",
                   help=f"time limit of one cell (default: {DEFAULT_CELL_TIMEOUT_S:g})")
    p.add_argument("--model-scaling", action="store_true",
                   help="probe the all-reduce (gloo, 2 processes, loopback) and predict 4..128 workers")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the cell records to FILE")
    add_results_option(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from xpubench.hardware.host import load_average, logical_cpus
    from xpubench.run.environment import collect
    from xpubench.run.launcher import ProcessLauncher
    from xpubench.store import ResultStore
    from xpubench.train.feed import model_facts
    from xpubench.train.spec import DEFAULT_STEPS, Fault, steps_for_epochs
    from xpubench.train.sweep import run_cells, specs_for

    check_output_file(args.json, "--json")
    facts = model_facts(args.model)
    scalings = ("weak", "strong") if args.scaling == "both" else (args.scaling,)
    threads = args.threads or max(1, (logical_cpus() or 1) // max(args.workers))
    fault = None
    if args.kill_worker:
        try:
            rank, step = (int(v) for v in args.kill_worker.split(":"))
        except ValueError:
            raise UsageError(f"--kill-worker {args.kill_worker!r}: give RANK:STEP, e.g. 1:5") from None
        fault = Fault(rank, step)
    steps = args.steps or DEFAULT_STEPS
    if args.epochs:
        steps = steps_for_epochs(args.epochs, facts.train_events, args.batch)
    specs = specs_for(args.model, args.strategy, args.workers, scalings, batch=args.batch, steps=steps,
                      threads=threads, learning_rate=args.lr, input_delay_s=args.input_delay,
                      checksums=args.checksums, fault=fault)
    command = f"xpubench train {args.model} --workers {','.join(map(str, args.workers))} --strategy " \
              f"{','.join(args.strategy)} --scaling {args.scaling} --batch {args.batch} --steps {steps}"
    with ResultStore(args.results) as store:
        run_id = store.start_run(collect([threads]), command=command)
        status = "interrupted"
        try:
            with ProcessLauncher() as launcher:
                results = run_cells(specs, launcher, store, run_id, args.cell_timeout, print)
                prediction = _model_scaling(results, launcher, args, threads) if args.model_scaling else None
            status = "finished"
        finally:
            store.finish_run(run_id, status, load_average())
        records = store.cells(run_id)
    for r in records:
        sr = r.get("scenario_result") or {}
        if r["status"] != "ok":
            print(f"{r['key']}: {r['status']}: {r['reason']}")
            continue
        b = sr["breakdown_ms"]
        print(f"{r['key']}: step {sr['step_ms']:.3g} ms, epoch {sr['epoch_s']:.3g} s, {sr['samples_per_s']:.4g} "
              f"samples/s, {sr['verdict']}; input {b['input']:.3g} fwd {b['forward']:.3g} bwd {b['backward']:.3g} "
              f"all-reduce {b['allreduce']:.3g} opt {b['optimizer']:.3g} idle {b['idle']:.3g} ms; validity "
              f"{sr['validity']['distance']:.3g} (untrained {sr['validity']['untrained_distance']:.3g})")
    for fitted in (prediction or {}).values():
        print(fitted["text"])
    print(f"run {run_id} stored in {args.results}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"run_id": run_id, "cells": records}
        if prediction is not None:
            payload["scaling_model"] = {strategy: {k: v for k, v in fitted.items() if k != "text"}
                                        for strategy, fitted in prediction.items()}
        args.json.write_text(json.dumps(payload, indent=2))
    from xpubench.run.exits import exit_code

    return exit_code(r["status"] for r in records)


def _model_scaling(results: list, launcher: object, args: argparse.Namespace, threads: int) -> dict:
    """Per strategy: fit the scaling model on its 1-worker cell, the communication probe and the concurrent compute
    probe (never on the N-worker cells it predicts); check it against them; predict 4..128 workers."""
    bases: dict[str, object] = {}  # strategy -> its first 1-worker cell (weak and strong share that run)
    for r in results:
        if r.status == "ok" and r.scenario_result["workers"] == 1:
            bases.setdefault(r.cell.backend, r)
    found = {}
    for strategy, base in bases.items():
        fitted = _fit_one(base, results, launcher, args, threads)
        if fitted is not None:
            found[strategy] = fitted
    if not found:
        print("no 1-worker cell was measured: no scaling model")
    return found


def _fit_one(base: object, results: list, launcher: object, args: argparse.Namespace, threads: int) -> dict | None:
    from dataclasses import asdict

    from xpubench.hardware.host import logical_cpus
    from xpubench.train.scaling import ScalingModel, render
    from xpubench.train.spec import TrainSpec
    from xpubench.train.task import ContentionTask, ProbeTask

    sr, strategy = base.scenario_result, base.cell.backend  # type: ignore[attr-defined]
    buckets = tuple(sr.get("allreduce_bucket_bytes") or (sr["gradient_bytes"],))
    # N workers computing at once, for N up to this machine's CPUs (beyond them, the model assumes time-sharing).
    copies = min(max(args.workers), logical_cpus() or 1)
    concurrent = None
    if copies > 1:
        spec = TrainSpec(args.model, strategy, 1, batch=sr["local_batch"], steps=sr["steps"], threads=threads,
                         learning_rate=args.lr, input_delay_s=args.input_delay)
        ran = launcher.run(ContentionTask(spec, copies, args.cell_timeout), 2 * args.cell_timeout + 60, print)  # type: ignore[attr-defined]
        if not ran.ok:
            print(f"{strategy}: the concurrent compute probe failed: {ran.value} (no contention or straggler term)")
        concurrent = ran.value if ran.ok else None
    outcome = launcher.run(ProbeTask(buckets, gaps_s=_gaps(concurrent, len(buckets))), 300)  # type: ignore[attr-defined]
    if not outcome.ok:
        print(f"{strategy}: the communication probe failed: {outcome.value}")
        return None
    model = ScalingModel.fit(sr, outcome.value, concurrent, threads)
    local, scaling = sr["local_batch"], sr["scaling"]
    checks = []
    for r in results:
        rs = r.scenario_result
        if r.status == "ok" and r.cell.backend == strategy and rs["scaling"] == scaling and rs["workers"] > 1:
            n = rs["workers"]
            predicted = model.step_s(n, rs["local_batch"]) * 1e3
            checks.append({"strategy": strategy, "workers": n, "measured_step_ms": rs["step_ms"],
                           "predicted_step_ms": predicted, "error": predicted / rs["step_ms"] - 1,
                           "parts_ms": {k: v * 1e3 for k, v in model.parts(n, rs["local_batch"]).items()}})
    rows = model.predictions(scaling, local)
    text = f"{strategy}: " + render(model, rows)
    for c in checks:
        parts = ", ".join(f"{k[:-2]} {v:.3g}" for k, v in c["parts_ms"].items())
        text += (f"\n{strategy} {c['workers']} workers on loopback: predicted {c['predicted_step_ms']:.3g} ms "
                 f"({parts}), measured {c['measured_step_ms']:.3g} ms ({c['error']:+.0%})")
    return {"model": asdict(model), "probe": outcome.value, "concurrent": concurrent, "checks": checks,
            "predictions": rows, "text": text}


def _gaps(concurrent: dict | None, buckets: int) -> tuple[float, ...]:
    """The compute before each bucket's all-reduce in one worker's step (the alone run's mean gaps, or its busy
    step shared evenly when the gaps were not timed bucket by bucket), for the probe to compute before each."""
    if not concurrent:
        return ()
    columns = concurrent.get("segments_alone_s") or []
    if len(columns) == buckets:
        return tuple(sum(c) / len(c) for c in columns)
    busy = concurrent["alone_s"]
    return (sum(busy) / len(busy) / buckets,) * buckets
