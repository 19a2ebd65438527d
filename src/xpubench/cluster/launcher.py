"""A Launcher whose workers are a Dask cluster's: each task is a Dask task that runs it, on the worker's machine,
in a ProcessLauncher of its own (so crashes, out-of-memory kills and time limits are what they are locally),
and returns the TaskOutcome. A task asks for the resources it needs (`dask worker --resources "gpu=1"`); one
that no worker offers is answered `unavailable` at once. A task whose worker is lost runs once more elsewhere,
then fails with the reason. Requires the `cluster` extra (dask[distributed])."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from xpubench.errors import UsageError, one_line
from xpubench.run.launcher import FAILED, UNAVAILABLE, Pending, ProcessLauncher, Running, Say, Task, TaskOutcome

LOCAL = "local:"
STARTS = 2  # a task runs once, and once more when its worker is lost; a third start is not let run
CONNECT_TIMEOUT_S = 10
INFO_TTL_S = 1.0  # how long the workers' slots and resources, as the scheduler told them, are taken as true
STRANDED_S = 60.0  # a task that no worker left can take (its only worker was lost) fails after this long


def connect(cluster: str, say: Say | None = None) -> DaskLauncher:
    """A launcher on the Dask scheduler at `cluster` (tcp://host:8786), or on a new cluster of N worker
    processes on this machine (`local:N`). A scheduler that does not answer, or has no worker, is a UsageError."""
    return DaskLauncher(cluster, say)


@dataclass
class _Submitted:
    pending: Pending
    future: Any  # its distributed.Future, once submitted
    say: Say
    needs: dict[str, float]
    starts: list[str] = field(default_factory=list)
    stranded_since: float | None = None  # when the last worker that could take it was lost


class DaskLauncher:
    """Runs tasks on the workers of a Dask cluster, as many at once as they have threads (`dask worker
    --nthreads 1` per core a cell may use: a cell's runtime takes its own threads). Use as a context manager."""

    remote = True  # its workers see neither this machine's files nor its devices

    def __init__(self, cluster: str, say: Say | None = None) -> None:
        try:
            import distributed
        except ImportError:
            raise UsageError("--cluster needs Dask: pip install 'xpubench[cluster]'") from None
        self.cluster = cluster
        self.say: Say = say or (lambda _msg: None)
        self._local = None
        if cluster.startswith(LOCAL):
            count = cluster[len(LOCAL):]
            if not count.isdigit() or int(count) < 1:
                raise UsageError(f"--cluster {cluster}: give local:N with N worker processes, e.g. local:2")
            self._local = distributed.LocalCluster(
                n_workers=int(count), threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.ERROR,
                # No dashboard, and its health page on any free port (not 8787, which may be taken).
                scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            )
            address = self._local.scheduler_address
        else:
            address = cluster
        try:
            self._client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            self._close_cluster()
            raise UsageError(f"no Dask scheduler answers at {cluster} ({one_line(exc)}): start one with "
                             "`dask scheduler` and workers with `dask worker ADDRESS`") from None
        try:
            self._client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except TimeoutError:
            self.close()
            raise UsageError(f"the Dask scheduler at {cluster} has no worker: start some with "
                             f"`dask worker {address} --nthreads 1`") from None
        self._topic = f"xpubench-{uuid.uuid4().hex}"  # this launcher's tasks say on it when they start
        self._lock = threading.Lock()
        self._submitted: dict[str, _Submitted] = {}
        self._info: tuple[float, list[dict[str, Any]]] = (-INFO_TTL_S, [])
        self._client.subscribe_topic(self._topic, self._started)

    def __enter__(self) -> DaskLauncher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the Launcher protocol -----------------------------------------------------------------------------

    @property
    def slots(self) -> int:
        """The threads of the workers the scheduler knows now."""
        return sum(int(w.get("nthreads", 1)) for w in self._workers())

    def submit(
        self, task: Task, timeout_s: float, say: Say | None = None, needs: Mapping[str, float] | None = None
    ) -> Pending:
        needs = dict(needs or {})
        lacking = self._lacking(needs)
        if lacking:
            return Pending.settled(TaskOutcome(UNAVAILABLE, lacking))
        token = uuid.uuid4().hex[:16]
        submitted = _Submitted(Pending(), None, say or self.say, needs)
        with self._lock:  # before it can start: its start is told by token
            self._submitted[token] = submitted
        submitted.future = self._client.submit(
            _execute, task, timeout_s, self._topic, token, key=f"xpubench-{token}", pure=False,
            resources=needs or None,
        )
        submitted.future.add_done_callback(lambda f, token=token: self._settle(token, f))
        return submitted.pending

    def run(self, task: Task, timeout_s: float, say: Say | None = None) -> TaskOutcome:
        return self.submit(task, timeout_s, say).result()

    def start(self, task: Task, say: Say | None = None) -> Running:
        raise NotImplementedError("long-lived tasks (servers) run on this machine's ProcessLauncher")

    def interrupt(self) -> None:
        """Every task submitted and not answered fails; those running are killed on their workers."""
        with self._lock:
            tokens = list(self._submitted)
        for token in tokens:
            self._give_up(token, "the run was interrupted", stop=False)
        with contextlib.suppress(Exception):
            self._client.run(_stop, self._topic, None)  # one call kills them all

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.unsubscribe_topic(self._topic)
        with contextlib.suppress(Exception):
            self._client.close()
        self._close_cluster()

    # -- inside ------------------------------------------------------------------------------------------

    def _close_cluster(self) -> None:
        if self._local is not None:
            with contextlib.suppress(Exception):
                self._local.close()
            self._local = None

    def _workers(self) -> list[dict[str, Any]]:
        """The scheduler's workers (asked at most once per INFO_TTL_S); tasks that none of them can take
        any longer fail once that has lasted STRANDED_S, rather than wait for ever."""
        when, workers = self._info
        now = time.monotonic()
        if now - when > INFO_TTL_S:
            workers = list(self._client.scheduler_info(n_workers=-1)["workers"].values())
            self._info = (now, workers)
            with self._lock:
                submitted = list(self._submitted.items())
            for token, task in submitted:
                if _offered(task.needs, workers):
                    task.stranded_since = None
                elif task.stranded_since is None:
                    task.stranded_since = now
                elif now - task.stranded_since > STRANDED_S:
                    self._give_up(token, f"{self._lacking(task.needs, workers)}, for {STRANDED_S:g} s")
        return workers

    def _lacking(self, needs: dict[str, float], workers: list[dict[str, Any]] | None = None) -> str | None:
        """Why no worker of the cluster can take a task that needs `needs`; None when one can."""
        workers = self._workers() if workers is None else workers
        if _offered(needs, workers):
            return None
        if not workers:
            return f"the cluster {self.cluster} has no worker left"
        wanted = ",".join(f"{k}={v:g}" for k, v in sorted(needs.items()))
        return (f"no worker of the cluster {self.cluster} offers {wanted} (start one with "
                f"`dask worker ADDRESS --resources \"{wanted}\"`)")

    def _started(self, event: tuple[float, dict[str, str]]) -> None:
        """A task began on a worker (in the client's event loop: nothing here may wait on the scheduler)."""
        message = event[1]
        with self._lock:
            submitted = self._submitted.get(message["token"])
            if submitted is None:
                return
            submitted.starts.append(message["node"])
            submitted.pending.where = message["node"]
            starts = list(submitted.starts)
        if len(starts) > STARTS:
            reason = f"its cluster worker was lost twice ({', then '.join(starts[:-1])}): not tried a third time"
            threading.Thread(target=self._give_up, args=(message["token"], reason), daemon=True).start()
        elif len(starts) > 1:
            submitted.say(f"its worker {starts[-2]} was lost; running it again on {starts[-1]}")

    def _settle(self, token: str, future: Any) -> None:
        """The Dask task ended (in Dask's callback thread): answer its Pending with the outcome."""
        from concurrent.futures import CancelledError

        from distributed.scheduler import KilledWorker

        with self._lock:
            submitted = self._submitted.pop(token, None)
        if submitted is None or submitted.pending.done():
            return
        try:
            outcome, said = future.result()
            for line in said:
                submitted.say(line)
        except CancelledError:
            outcome = TaskOutcome(FAILED, "its cluster task was cancelled")
        except KilledWorker as exc:
            outcome = TaskOutcome(FAILED, f"its cluster workers were lost: {one_line(exc)}")
        except Exception as exc:
            outcome = TaskOutcome(FAILED, f"its cluster task failed: {one_line(exc)}")
        with contextlib.suppress(Exception):  # InvalidStateError: given up meanwhile
            submitted.pending.set_result(outcome)

    def _give_up(self, token: str, reason: str, stop: bool = True) -> None:
        """The task fails with `reason`: cancelled, and killed where it runs (`stop`)."""
        with self._lock:
            submitted = self._submitted.pop(token, None)
        if submitted is None:
            return
        with contextlib.suppress(Exception):
            submitted.pending.set_result(TaskOutcome(FAILED, reason))
        with contextlib.suppress(Exception):
            submitted.future.cancel()
        if stop:
            with contextlib.suppress(Exception):
                self._client.run(_stop, self._topic, token)


def _offered(needs: Mapping[str, float], workers: list[dict[str, Any]]) -> bool:
    return any(all(w.get("resources", {}).get(k, 0) >= v for k, v in needs.items()) for w in workers)


# -- on the worker ------------------------------------------------------------------------------------------

# This worker process's running tasks, by (launcher topic, token): what `_stop` kills.
_RUNNING: dict[tuple[str, str], ProcessLauncher] = {}
_RUNNING_LOCK = threading.Lock()


def _execute(task: Task, timeout_s: float, topic: str, token: str) -> tuple[TaskOutcome, list[str]]:
    """The Dask task: `task` in a worker process of this machine, its outcome with this node's name and
    environment, and what it said."""
    from distributed import get_worker

    worker = get_worker()
    node = str(worker.name)
    worker.log_event(topic, {"token": token, "node": node})
    said: list[str] = []
    with ProcessLauncher() as launcher:
        with _RUNNING_LOCK:
            _RUNNING[(topic, token)] = launcher
        try:
            outcome = launcher.run(task, timeout_s, said.append)
        finally:
            with _RUNNING_LOCK:
                _RUNNING.pop((topic, token), None)
    if outcome.info is not None:
        outcome = replace(outcome, info=replace(outcome.info, node=node, environment=node_environment()))
    return outcome, said


def _stop(topic: str, token: str | None) -> None:
    """Kill this worker's running tasks of the launcher `topic` (one, or every one when `token` is None)."""
    with _RUNNING_LOCK:
        launchers = [v for (t, k), v in _RUNNING.items() if t == topic and token in (None, k)]
    for launcher in launchers:
        launcher.interrupt()


@functools.cache
def node_environment() -> dict[str, Any]:
    """What a cell stores about the machine its cluster worker ran on (read once per worker process)."""
    import platform

    from xpubench.hardware import host
    from xpubench.run.environment import package_versions
    from xpubench.version import __version__

    return {
        "cpu_model": host.cpu_model(),
        "logical_cpus": host.logical_cpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "xpubench": __version__,
        "packages": package_versions(),
    }
