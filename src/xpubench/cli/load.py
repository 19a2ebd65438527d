"""`xpubench load URL --model M --concurrency 1,2,4 | --rate Q,...`: load any Open Inference Protocol endpoint."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from xpubench.cli.options import add_results_option, pin_cpus, positive_int_list, require_serve_extra
from xpubench.errors import UsageError
from xpubench.run.limits import LOAD_TRIALS


def rate_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of rates, e.g. 100,200") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive requests/s, e.g. 100,200")
    return values


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load",
        help="load an Open Inference Protocol server (xpubench serve, Triton, MLServer, KServe) and store the curve",
        description="Send requests to MODEL at URL, level by level: N requests always in flight (--concurrency, "
        "closed loop) or arrivals at a rate on a seeded schedule (--rate, open loop; latency counts from each "
        "request's scheduled send time). Each level stores throughput, p50/p90/p99 latency, stability windows, the "
        "client's send/receive times and, from the server's statistics extension where it has one, its queue and "
        "compute times and the batches it formed. Client processes share the load so the generator is not the "
        "bottleneck; each level stops by itself.",
    )
    p.add_argument("url", metavar="URL", help="the server: http://HOST:PORT, grpc://HOST:PORT, or HOST:PORT")
    p.add_argument("--model", required=True, metavar="NAME", help="the model's name on the server")
    load = p.add_mutually_exclusive_group(required=True)
    load.add_argument("--concurrency", type=positive_int_list, default=None, metavar="N,...",
                      help="closed loop: requests in flight, one level each (e.g. 1,2,4,8)")
    load.add_argument("--rate", type=rate_list, default=None, metavar="QPS,...",
                      help="open loop: requests/s, one level each")
    p.add_argument("--arrivals", choices=("poisson", "constant"), default="poisson",
                   help="open loop: the arrival process (default: poisson, seeded)")
    p.add_argument("--protocol", choices=("http", "grpc"), default=None,
                   help="the protocol when URL has no scheme (default: http)")
    p.add_argument("--duration", type=float, default=5.0, metavar="S", help="seconds per level (default: 5)")
    p.add_argument("--warmup", type=float, default=None, metavar="S",
                   help="seconds at each level's start left out (default: a fifth of --duration, at most 1)")
    p.add_argument("--batch", type=int, default=1, metavar="B", help="samples per request (default: 1)")
    p.add_argument("--clients", type=int, default=None, metavar="N",
                   help="client processes (default: one per 8 in flight or 1000 req/s, at most the CPUs they run on)")
    p.add_argument("--max-trials", type=int, default=LOAD_TRIALS, metavar="K",
                   help="measure a level whose last 3 windows differ by more than 10 %% again, up to K times in all "
                   f"(perf_analyzer's rule; default: {LOAD_TRIALS}); the last trial is stored")
    p.add_argument("--pin", default=None, metavar="CPUS",
                   help="run the client processes on these CPUs only, e.g. 1 or 2-3: keep them off a local server's "
                   "CPUs (xpubench serve --pin) as if they were other machines (default: no pinning)")
    p.add_argument("--drain", type=float, default=10.0, metavar="S",
                   help="seconds the last requests may take after a level's end; later ones count unanswered "
                   "(default: 10)")
    p.add_argument("--seed", type=int, default=20260501, help="the open loop's arrival schedule and the inputs")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the level records to FILE")
    add_results_option(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    require_serve_extra("xpubench load")
    from xpubench.hardware.host import load_average
    from xpubench.loadgen.runner import LoadRequest, levels_from, probe, run_levels
    from xpubench.loadgen.transport import Endpoint
    from xpubench.run.environment import collect
    from xpubench.run.launcher import WARM_WORKERS, ProcessLauncher
    from xpubench.store import ResultStore

    try:
        levels = levels_from(args.concurrency, args.rate, args.arrivals)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    request = LoadRequest(Endpoint.parse(args.url, args.protocol), args.model, levels, args.duration, args.batch,
                          args.clients, args.seed, args.warmup, args.drain, pin_cpus(args.pin),
                          args.max_trials)
    target = probe(request)
    command = shlex.join(["xpubench", *sys.argv[1:]]) if sys.argv[1:2] == ["load"] else "xpubench load"
    clients = max(request.clients_for(level) for level in levels)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with ResultStore(args.results) as store:
        run_id = store.start_run(collect([1]), command=command)
        status = "interrupted"
        try:
            with ProcessLauncher(request.cpus, warm=max(WARM_WORKERS, clients)) as launcher:
                results = run_levels(request, launcher, store, run_id, say, target)
            status = "finished"
        finally:
            store.finish_run(run_id, status, load_average())
        records = store.cells(run_id)
    print(f"run {run_id} stored in {args.results}: xpubench show {run_id} / xpubench report {run_id} read it")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"run_id": run_id, "cells": records}, indent=2))
    return 0 if all(r.status == "ok" for r in results) else 1
