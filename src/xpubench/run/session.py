"""One stored run's life, written once: started (or resumed) in the store with its request and environment,
measured, and finished as `finished` or `interrupted`; Ctrl-C and SIGTERM keep every stored cell. `xpubench
run`, `xpubench study` and `xpubench.benchmark()` all go through it."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpubench.errors import UsageError
from xpubench.run.exits import EXIT_INTERRUPTED, EXIT_TERMINATED, exit_code
from xpubench.run.launcher import Launcher, ProcessLauncher
from xpubench.run.matrix import Matrix, matrix_from_json, matrix_to_json
from xpubench.run.sweep import Say, Sweep, SweepEvents

if TYPE_CHECKING:
    from xpubench.store import ResultStore


class Stopped(BaseException):
    """SIGTERM arrived: stop like Ctrl-C, keeping what is stored (not an Exception, so no cell's error
    handling can swallow it)."""


@dataclass(frozen=True)
class Ending:
    """How a session ended: the run's stored status and the exit code a command returns for it (run/exits.py:
    from the statuses of every stored cell of the run once finished, 130 or 143 when interrupted)."""

    run_id: str
    status: str  # finished | interrupted
    exit_code: int


class Session:
    """A run of one or more matrices into one store. Build it with `start` or `resume`, then `measure`."""

    def __init__(
        self, store: ResultStore, run_id: str, matrices: Sequence[Matrix], sweep: Sweep, launcher: Launcher
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.matrices = tuple(matrices)
        self.sweep = sweep
        self.launcher = launcher

    @property
    def cell_count(self) -> int:
        return sum(len(m.cells()) for m in self.matrices)

    @classmethod
    @contextmanager
    def start(
        cls,
        results: Path | str,
        matrices: Sequence[Matrix],
        command: str,
        *,
        cell_timeout_s: float,
        pin: Iterable[int] | None = None,
        cwd: Path | str | None = None,
        say: Say | None = None,
        extra: Mapping[str, Any] | None = None,
        launcher: Launcher | None = None,
    ) -> Iterator[Session]:
        """A new run of `matrices` in the store of the folder `results`. The user's own model files (and any
        model with --data) are prepared first, so that a bad one is a UsageError before anything is stored.
        `extra` joins the stored request (a study's name and mode). `launcher` measures the cells (default:
        a ProcessLauncher with `pin` and `cwd`, which also prepares the models); its owner closes it. A
        launcher with a `cluster` attribute has it stored, so that `resume` can reach that cluster again."""
        from xpubench.models.filecheck import check_user_model
        from xpubench.models.zoo import lookup
        from xpubench.run.environment import collect
        from xpubench.store import ResultStore

        for model in {m for matrix in matrices for m in matrix.models if lookup(m) is None}:
            check_user_model(model, cwd)  # a broken file's container, in this process: no worker started for it
        with ProcessLauncher(pin, cwd) as local, Sweep(local, cell_timeout_s, say, launcher) as sweep:
            for matrix in matrices:
                for model in matrix.models:
                    if lookup(model) is None or matrix.data is not None:
                        sweep.prepare(matrix, model)
            threads = sorted({t for m in matrices for t in m.threads})
            request = {**(extra or {}), **_request(matrices, sweep, local)}
            with ResultStore(results) as store:
                run_id = store.start_run(collect(threads), command=command, request=request)
                yield cls(store, run_id, matrices, sweep, sweep.cells)

    @classmethod
    @contextmanager
    def resume(
        cls,
        results: Path | str,
        run_id: str,
        say: Say | None = None,
        study: str | None = None,
        connect: Callable[[str], Launcher] | None = None,
        cluster: str | None = None,
    ) -> Iterator[Session]:
        """The stored run `run_id` of the store in `results` again, measuring only the cells of its request
        that it lacks: a run of `xpubench run`, or of the named `study`. Refused while the run's own process
        is still alive. A run that measured on a cluster goes on there (or on `cluster`, when given): `connect`
        makes the launcher for it, and the session closes it."""
        from xpubench.store import ResultStore

        with ResultStore(results, create=False) as store, \
                cls._resumed(store, run_id, say, study, connect, cluster) as session:
            yield session

    @classmethod
    @contextmanager
    def _resumed(
        cls,
        store: ResultStore,
        run_id: str,
        say: Say | None,
        study: str | None,
        connect: Callable[[str], Launcher] | None,
        cluster: str | None,
    ) -> Iterator[Session]:
        run = store.run(run_id)
        request = run["request"]
        if request is None:
            raise UsageError(f"run {run_id} was stored without its request (by an older xpubench): cannot resume it")
        stored_study = request.get("study")
        if stored_study != study:
            if stored_study:
                raise UsageError(f"run {run_id} is a study; go on with `xpubench study {stored_study} --resume "
                                 f"{run_id}`")
            raise UsageError(f"run {run_id} is not a study run: `xpubench run --resume {run_id}` finishes it")
        _check_not_running(run_id, run["status"], request)
        try:
            stored = request["matrices"] if "matrices" in request else [request["matrix"]]
            matrices = [matrix_from_json(m) for m in stored]
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"run {run_id}'s stored request no longer fits this xpubench: {exc}") from None
        cluster = cluster or request.get("cluster")
        if cluster and connect is None:
            raise UsageError(f"run {run_id} measured on the cluster {cluster}: resume it with `xpubench run "
                             f"--resume {run_id}`")
        with ExitStack() as stack:
            launcher = stack.enter_context(_closing(connect(cluster))) if cluster and connect else None
            local = stack.enter_context(ProcessLauncher(request.get("pin"), request.get("cwd")))
            sweep = stack.enter_context(Sweep(local, request["cell_timeout_s"], say, launcher))
            store.resume_run(run_id, {**request, **_request(matrices, sweep, local)})
            yield cls(store, run_id, matrices, sweep, sweep.cells)

    def measure(self, events: SweepEvents | None = None) -> Ending:
        """Measure what the run lacks. Ctrl-C and SIGTERM stop it with what is stored kept; either way the
        run is finished in the store with its status and the load average at the end. The exit code of a
        finished run follows from the statuses of all its stored cells (those of an earlier session too)."""
        from xpubench.hardware.host import load_average

        status, code = "interrupted", 0  # until the sweep returns
        try:
            with _sigterm_raises():
                self.sweep.run(self.matrices, self.store, self.run_id, events)
            status = "finished"
            code = exit_code(record["status"] for record in self.store.cells(self.run_id))
        except KeyboardInterrupt:
            code = EXIT_INTERRUPTED
        except Stopped:
            code = EXIT_TERMINATED
        finally:
            self.store.finish_run(self.run_id, status, load_average())
        return Ending(self.run_id, status, code)


@contextmanager
def _closing(launcher: Launcher) -> Iterator[Launcher]:
    try:
        yield launcher
    finally:
        launcher.close()


def _request(matrices: Sequence[Matrix], sweep: Sweep, local: ProcessLauncher) -> dict[str, Any]:
    """What a run stores to be resumed: its matrices, how its workers run, and who is running it."""
    pid = os.getpid()
    return {
        "matrices": [matrix_to_json(m) for m in matrices],
        "cell_timeout_s": sweep.timeout_s,
        "pin": list(local.pin) if local.pin else None,
        "cwd": str(local.cwd),  # relative model and data paths are relative to it
        "cluster": getattr(sweep.cells, "cluster", None),  # where the cells ran: None, this machine
        "pid": pid,  # so a resume can tell a run still running from an interrupted one
        "started": process_start(pid),  # and that pid from a later process that reuses it
        "host": socket.gethostname(),
    }


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Stopped while the block runs (in the main thread only, where signals arrive)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: object) -> None:
        raise Stopped()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def process_start(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux); None where unknown."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _check_not_running(run_id: str, status: str, request: Mapping[str, Any]) -> None:
    """Refuse to resume a run whose sweep is still alive (same host, its process still xpubench)."""
    pid = request.get("pid")
    if status != "running" or request.get("host") != socket.gethostname() or not pid or pid == os.getpid():
        return
    if request.get("started") is not None and process_start(pid) != request["started"]:
        return  # gone, or its pid now belongs to another process
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"xpubench" in cmdline:
        raise UsageError(f"run {run_id} is still running (process {pid}): stop it before resuming")
