"""`xpubench study sonic`: inference as a service (SONIC) on this machine: in-process against served, with and
without dynamic batching, the fitted service model and its error at held-out levels."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from xpubench.cli.options import add_cell_timeout_option, add_results_option, require_serve_extra
from xpubench.errors import UsageError
from xpubench.run.exits import epilog

if TYPE_CHECKING:
    from xpubench.loadgen.transport import Endpoint
    from xpubench.run.launcher import Launcher, Running
    from xpubench.store import ResultStore
    from xpubench.studies.sonic import Plan

Say = Callable[[str], None]
READY_TIMEOUT_S = 300.0  # a server resolves (and on first use trains and converts) its model before it listens
STOP_TIMEOUT_S = 30.0  # a stopped server answers what it accepted; killed after this


def add_parser(studies: argparse._SubParsersAction) -> None:
    p = studies.add_parser(
        "sonic",
        help="inference as a service (SONIC): in-process against served, dynamic batching, the t_SONIC model",
        description="The as-a-service study on this machine: each model measured in-process (t_CPU at batch 1 and "
        "a batch sweep, stored like `xpubench run`), then served by `xpubench serve` on 127.0.0.1 with dynamic "
        "batching and with --max-batch 1, loaded by `xpubench load`'s closed loop at a few concurrencies (each "
        "level a stored `load` cell), the service model fitted on some levels and checked on the others. Prints "
        "the study's tables with SONIC's figures beside ours. Default: facile and toptag-resnet, six levels of 3 s "
        "per server in three rounds, each round a run (about nine minutes on 2 cores, training included); "
        "--quick: FACILE at its tiny size, one round (about a minute).",
        epilog=epilog(),
    )
    p.add_argument("--quick", action="store_true", help="FACILE at its tiny size, three short levels (a smoke test)")
    p.add_argument("--model", default=None, metavar="M,...",
                   help="zoo models to study (default: facile,toptag-resnet; --quick: facile)")
    add_cell_timeout_option(p, "an in-process cell's")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write the runs, the records and the fitted models to FILE")
    add_results_option(p)
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    require_serve_extra("xpubench study sonic")
    from xpubench.models.zoo import lookup
    from xpubench.studies.sonic import plan

    models = [m.strip() for m in (args.model or "").split(",") if m.strip()]
    unknown = [m for m in models if lookup(m) is None]
    if unknown:
        raise UsageError(f"not a zoo model: {', '.join(unknown)} (xpubench zoo lists them)")
    return _measure(plan("quick" if args.quick else "default", models or None), args)


def _measure(study: Plan, args: argparse.Namespace) -> int:
    from xpubench.hardware.host import allowed_cpus
    from xpubench.report.progress import ProgressBar
    from xpubench.run.launcher import ProcessLauncher
    from xpubench.run.pins import format_cpus, halves
    from xpubench.run.session import Session
    from xpubench.run.sweep import SweepEvents
    from xpubench.studies.sonic import measured, render, summary

    progress = ProgressBar(sys.stderr)
    started = time.monotonic()
    command = shlex.join(["xpubench", *sys.argv[1:]]) if sys.argv[1:2] == ["study"] else "xpubench study sonic"
    extra = {"study": "sonic", "mode": study.mode, "models": list(study.models)}
    with Session.start(args.results, [study.matrix], command, cell_timeout_s=args.cell_timeout, say=progress.say,
                       extra=extra) as running:
        progress.say(f"study sonic ({study.mode}): in-process run {running.run_id}, {running.cell_count} cells, "
                     f"results in {running.store.path}")
        ending = running.measure(SweepEvents(progress.say, progress.cell_started, progress.cell_done))
        if ending.status == "interrupted":
            progress.say(f"\ninterrupted: the in-process cells measured so far are stored in run {ending.run_id}")
            return ending.exit_code
        in_process = running.store.cells(ending.run_id)
        # Apart, as SONIC's clients and server are: sharing both CPUs of this machine, the same level (facile, 4
        # clients) measured 1390 to 1882 req/s in four runs in a row; apart, 1845 to 2152.
        server_cpus, client_cpus = halves(allowed_cpus())
        if server_cpus:
            progress.say(f"the servers run on CPU {format_cpus(server_cpus)}, their clients on CPU "
                         f"{format_cpus(client_cpus or ())}")
        with ProcessLauncher(server_cpus, warm=0) as servers, ProcessLauncher(client_cpus, warm=0) as clients:
            load_runs = _load_rounds(study, running.store, (servers, clients), command, ending.run_id,
                                     progress.say, (server_cpus, client_cpus))
        loads = {policy: [r for run_id in ids for r in running.store.cells(run_id)]
                 for policy, ids in load_runs.items()}
    studies = measured(in_process, loads, study.models)
    print(render(studies))
    runs = " ".join([ending.run_id, *(run_id for ids in load_runs.values() for run_id in ids)])
    print(f"\nruns {runs} ({time.monotonic() - started:.0f} s) in {args.results}: the in-process run, then the load "
          f"with dynamic batching and with max batch 1, one run per round; xpubench show / report read them, "
          f"`xpubench compare {load_runs['none'][0]} {load_runs['dynamic'][0]}` sets the two servers side by side")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"in_process_run": ending.run_id, "load_runs": load_runs,
                                         "in_process": in_process, "load": loads, "models": summary(studies)},
                                        indent=2, default=str))
    codes = [ending.exit_code] + [0 if all(r["status"] == "ok" for r in rs) else 1 for rs in loads.values()]
    return max(codes)


def _load_rounds(study: Plan, store: ResultStore, launchers: tuple[Launcher, Launcher], command: str,
                 in_process_run: str, say: Say, cpus: tuple[tuple[int, ...] | None, ...]) -> dict[str, list[str]]:
    """Per policy, one stored run of `xpubench load`'s closed loop per round. Each round serves every model under
    every policy in turn (a fresh server each time, started by the first launcher) and loads it at every level
    (clients started by the second), so the rounds sample the servers' processes as well as the machine's
    moments, and the two policies are measured side by side."""
    from xpubench.hardware.host import load_average
    from xpubench.loadgen.runner import LoadRequest, levels_from, probe, run_levels
    from xpubench.run.environment import collect
    from xpubench.studies.sonic import BACKEND, POLICIES, PRECISION

    servers, clients = launchers
    server_cpus, client_cpus = cpus
    runs: dict[str, list[str]] = {policy: [] for policy, _ in POLICIES}
    for round_ in range(1, study.rounds + 1):
        for policy, max_batch in POLICIES:
            request_info = {"sonic": {"in_process_run": in_process_run, "policy": policy, "max_batch": max_batch,
                                      "mode": study.mode, "round": round_, "rounds": study.rounds,
                                      "server_cpus": server_cpus, "client_cpus": client_cpus}}
            runs[policy].append(store.start_run(collect([1]), command=f"{command}  # load, {policy} batching, "
                                                f"round {round_} of {study.rounds}", request=request_info))
    status = "interrupted"
    try:
        for round_ in range(1, study.rounds + 1):
            for policy, max_batch in POLICIES:
                for model in study.models:
                    name = model.partition(":")[0]
                    with served(model, name, max_batch, servers, say) as endpoint:
                        request = LoadRequest(endpoint, name, levels_from(study.concurrency, None, "poisson"),
                                              study.duration_s, warmup_s=study.warmup_s, drain_s=2.0,
                                              cpus=client_cpus, trials=study.trials)
                        say(f"{name} served ({BACKEND} {PRECISION}, max batch {max_batch}) at {endpoint.url()}, "
                            f"round {round_} of {study.rounds}")
                        run_levels(request, clients, store, runs[policy][round_ - 1], say, probe(request))
        status = "finished"
    finally:
        for run_id in (run_id for ids in runs.values() for run_id in ids):
            store.finish_run(run_id, status, load_average())
    return runs


@contextlib.contextmanager
def served(model: str, name: str, max_batch: int, launcher: Launcher, say: Say) -> Iterator[Endpoint]:
    """`xpubench serve MODEL --max-batch N` on free loopback ports, in a launcher's worker, until the block ends
    (an error and Ctrl-C included): asked to stop (SIGINT: it answers what it accepted), killed if it lingers."""
    from xpubench.loadgen.transport import Endpoint
    from xpubench.run.ports import free_ports
    from xpubench.serve.model import ServeSpec
    from xpubench.serve.policy import BatchingPolicy
    from xpubench.serve.task import DEFAULT_HOST, ServeTask
    from xpubench.studies.sonic import BACKEND, PRECISION

    http_port, grpc_port = free_ports(2)
    spec = ServeSpec(model, BACKEND, {}, PRECISION, None, 1, 1, BatchingPolicy(max_batch), {}, name)
    running = launcher.start(ServeTask(spec, http_port, grpc_port, DEFAULT_HOST),
                             lambda line: say(f"xpubench serve: {line}"))
    try:
        _wait_ready(Endpoint("http", f"{DEFAULT_HOST}:{http_port}"), name, running)
        yield Endpoint("grpc", f"{DEFAULT_HOST}:{grpc_port}")
    finally:
        if running.stop(STOP_TIMEOUT_S) is None:
            launcher.interrupt()
            running.wait(10)


def _wait_ready(endpoint: Endpoint, name: str, running: Running) -> None:
    """Until the server says its model is ready; a one-line error when its worker ended first or it never does."""
    from xpubench.loadgen.transport import connect

    client = connect(endpoint)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            ended = running.wait(0)
            if ended is not None:
                raise UsageError(f"the server of {name} stopped before it was ready: {ended.value}")
            with contextlib.suppress(Exception):  # not listening yet
                if client.ready(name):
                    return
            time.sleep(0.2)
    finally:
        client.close()
    raise UsageError(f"the server of {name} was not ready within {READY_TIMEOUT_S:g} s")
