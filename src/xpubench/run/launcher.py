"""Launchers run a task somewhere isolated and return its answer or the reason it failed.

The `Launcher` protocol is all the sweep, the session and the long-lived services know of where tasks run
(xpubench.cluster has a launcher whose workers are a Dask cluster's).
`ProcessLauncher` runs each task in a fresh worker process on this machine (not fork: TensorFlow's and ONNX
Runtime's threads do not survive fork): it relays what the task says, enforces a time limit, kills the
worker's whole process group on a timeout or an interrupt, tells an out-of-memory kill (cgroup v2) from
another signal, and records the worker's CPUs, wall time and peak memory. It knows no task's insides.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from xpubench.run.pins import allowed_cpus
from xpubench.run.worker import HEADER

Say = Callable[[str], None]
_LOG_TAIL_BYTES = 4096
RESULT, USAGE, FAILED, UNAVAILABLE = "result", "usage", "failed", "unavailable"


class Task(Protocol):
    """Anything picklable that does its work in `execute` and returns its answer (see run.worker)."""

    def execute(self, say: Say) -> Any: ...


@dataclass(frozen=True)
class WorkerInfo:
    """Where and how a task's worker ran, stored with a cell."""

    pid: int
    affinity: tuple[int, ...]  # the CPUs the worker could run on
    wall_s: float
    max_rss_mib: float | None
    host: str = ""
    node: str = ""  # the cluster worker that started it; "" on this machine
    environment: Mapping[str, Any] | None = field(default=None, compare=False)  # that node's, when it is one

    def record(self) -> dict[str, Any]:
        worker = {"pid": self.pid, "wall_s": round(self.wall_s, 3), "max_rss_mib": self.max_rss_mib,
                  "host": self.host}
        if self.node:
            worker.update(node=self.node, environment=dict(self.environment or {}))
        return {"affinity": list(self.affinity), "worker": worker}


@dataclass(frozen=True)
class TaskOutcome:
    """What became of a task: its `result` (value), the user's mistake (`usage`: the one-line message),
    `failed` (value: the reason, e.g. a signal, out of memory, the time limit, the task's own error), or
    `unavailable` (value: why no worker can take it: none offers the resources it needs)."""

    kind: str
    value: Any
    info: WorkerInfo | None = None

    @property
    def ok(self) -> bool:
        return self.kind == RESULT


class Pending(Future):
    """A submitted task's outcome to come (a TaskOutcome); `where` names the worker running it, None while it
    waits for one."""

    def __init__(self) -> None:
        super().__init__()
        self.where: str | None = None

    @classmethod
    def settled(cls, outcome: TaskOutcome, where: str | None = None) -> Pending:
        pending = cls()
        pending.where = where
        pending.set_result(outcome)
        return pending


class Launcher(Protocol):
    """Runs tasks in isolated workers: one to completion (`run`), up to `slots` at once (`submit`), or a
    long-lived one started and stopped (`start`). `interrupt` stops every task it is running (they fail);
    `close` frees what it holds. `remote`: its workers may be other machines, which see neither this
    machine's files nor its devices (a task then carries what it reads)."""

    slots: int
    remote: bool

    def run(self, task: Task, timeout_s: float, say: Say | None = None) -> TaskOutcome: ...

    def submit(
        self, task: Task, timeout_s: float, say: Say | None = None, needs: Mapping[str, float] | None = None
    ) -> Pending:
        """The task on a worker that offers the resources it `needs` (run.resources); a launcher with one
        slot may finish it before returning. No such worker: an `unavailable` outcome at once."""
        ...

    def start(self, task: Task, say: Say | None = None) -> Running: ...

    def interrupt(self) -> None: ...

    def close(self) -> None: ...


class Running:
    """A long-lived task (a server) started by a launcher: stop it, or wait for its outcome."""

    def __init__(self, stop: Callable[[], None]) -> None:
        self._stop = stop
        self._done = threading.Event()
        self._outcome: TaskOutcome | None = None

    def _finish(self, outcome: TaskOutcome) -> None:
        self._outcome = outcome
        self._done.set()

    def stop(self, timeout_s: float | None = None) -> TaskOutcome | None:
        """Ask the task to finish (SIGINT: a server ends the requests it accepted), then wait for it."""
        self._stop()
        return self.wait(timeout_s)

    def wait(self, timeout_s: float | None = None) -> TaskOutcome | None:
        """The outcome once the task ended; None if it is still running after `timeout_s`."""
        self._done.wait(timeout_s)
        return self._outcome


class ProcessLauncher:
    """Runs each task in a fresh worker process of this machine, `pin`ned to CPUs, in the folder `cwd` (where
    relative model and data paths were given). Use as a context manager."""

    slots = 1  # one task at a time: cells are measured one after another, on a quiet machine
    remote = False

    def __init__(self, pin: Iterable[int] | None = None, cwd: Path | str | None = None) -> None:
        self.pin = tuple(sorted(pin)) if pin else None
        self.cwd = Path(cwd) if cwd else Path.cwd()
        self._logs = Path(tempfile.mkdtemp(prefix="xpubench-workers-"))
        self._host = socket.gethostname()
        self._running: set[int] = set()  # worker pids, for interrupt()
        self._interrupted: set[int] = set()

    def __enter__(self) -> ProcessLauncher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self._logs, ignore_errors=True)

    def interrupt(self) -> None:
        """Every task running now is killed and fails; later tasks run as usual."""
        for pid in list(self._running):
            self._interrupted.add(pid)
            _signal_group(pid, signal.SIGKILL)

    def submit(
        self, task: Task, timeout_s: float, say: Say | None = None, needs: Mapping[str, float] | None = None
    ) -> Pending:
        """Runs the task before returning: this machine has what it has (run.feasibility asked before)."""
        return Pending.settled(self.run(task, timeout_s, say), self._host)

    def start(self, task: Task, say: Say | None = None) -> Running:
        pid: list[int] = []
        running = Running(lambda: [_signal_group(p, signal.SIGINT) for p in pid])
        thread = threading.Thread(
            target=lambda: running._finish(self.run(task, math.inf, say, started=pid.append)), daemon=True
        )
        thread.start()
        return running

    def run(
        self, task: Task, timeout_s: float, say: Say | None = None, started: Callable[[int], None] | None = None
    ) -> TaskOutcome:
        """Start a worker for `task`, relay what it says, and wait for its answer, its death or the limit."""
        say = say or (lambda _msg: None)
        log = tempfile.NamedTemporaryFile(prefix="worker-", suffix=".log", dir=self._logs, delete=False)
        read_end, write_end = os.pipe()
        oom_before = _oom_kills()
        begun = time.monotonic()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "xpubench.run.worker", str(write_end), str(os.getpid())],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,  # runtimes' chatter goes to the log; its tail explains a death
                pass_fds=(write_end,),
                cwd=self.cwd,
                start_new_session=True,  # its own process group: a timeout kills what it started too
            )
        finally:
            os.close(write_end)
            log.close()
        self._running.add(proc.pid)
        if started is not None:
            started(proc.pid)
        messages: list[tuple[str, Any]] = []
        status: int | None = None
        rusage: Any = None
        timed_out = False
        try:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # it died at once: its exit status says why
                proc.stdin.write(pickle.dumps((task, self.pin), protocol=pickle.HIGHEST_PROTOCOL))
                proc.stdin.close()
            timed_out = not self._relay(read_end, begun + timeout_s, messages, say)
            if timed_out:
                _signal_group(proc.pid, signal.SIGKILL)
            status, rusage = _reap(proc.pid, time.monotonic() + 10)
        finally:
            os.close(read_end)
            if status is None:  # interrupted (Ctrl-C, SIGTERM): the worker must not measure on
                _signal_group(proc.pid, signal.SIGKILL)
                status, rusage = _reap(proc.pid, None)
            _signal_group(proc.pid, signal.SIGKILL)  # anything it started and left behind
            self._running.discard(proc.pid)
            proc.returncode = os.waitstatus_to_exitcode(status) if status is not None else -signal.SIGKILL
        results = dict(messages)
        affinity = results.get("affinity") or self.pin or allowed_cpus()
        max_rss = round(rusage.ru_maxrss / 1024, 1) if rusage is not None else None
        info = WorkerInfo(proc.pid, tuple(affinity), time.monotonic() - begun, max_rss, self._host)
        log_path = Path(log.name)
        try:
            if "result" in results:
                return TaskOutcome(RESULT, results["result"], info)
            if "usage" in results:
                return TaskOutcome(USAGE, results["usage"], info)
            if "error" in results:
                return TaskOutcome(FAILED, results["error"], info)
            if proc.pid in self._interrupted:
                self._interrupted.discard(proc.pid)
                return TaskOutcome(FAILED, "worker stopped: the run was interrupted", info)
            if timed_out:
                return TaskOutcome(FAILED, f"worker exceeded the {timeout_s:g} s limit", info)
            return TaskOutcome(FAILED, _death_reason(proc.returncode, oom_before, log_path), info)
        finally:
            log_path.unlink(missing_ok=True)

    def _relay(self, fd: int, deadline: float, messages: list[tuple[str, Any]], say: Say) -> bool:
        """Read the worker's messages until it closes the pipe (True) or the deadline passes (False)."""
        buffer = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return True
            buffer += chunk
            while len(buffer) >= HEADER.size:
                (size,) = HEADER.unpack_from(buffer)
                if len(buffer) < HEADER.size + size:
                    break
                kind, payload = pickle.loads(bytes(buffer[HEADER.size : HEADER.size + size]))
                del buffer[: HEADER.size + size]
                if kind == "say":
                    say(payload)
                else:
                    messages.append((kind, payload))


def _reap(pid: int, deadline: float | None) -> tuple[int | None, Any]:
    """Wait for the worker's exit status and resource usage; kill it if it lingers past `deadline`."""
    while True:
        done, status, rusage = os.wait4(pid, os.WNOHANG if deadline is not None else 0)
        if done:
            return status, rusage
        if deadline is not None and time.monotonic() > deadline:
            _signal_group(pid, signal.SIGKILL)
            deadline = None
        else:
            time.sleep(0.01)


def _signal_group(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, number)


def _death_reason(returncode: int, oom_before: int | None, log: Path) -> str:
    if returncode < 0:
        number = -returncode
        oom_after = _oom_kills()
        if number == signal.SIGKILL and oom_before is not None and oom_after is not None and oom_after > oom_before:
            return "worker ran out of memory (killed by the kernel's out-of-memory killer)"
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        reason = f"worker died: {name} (signal {number})"
        if number == signal.SIGKILL:
            reason += ", killed from outside, often for lack of memory"
    else:
        reason = f"worker exited with code {returncode} and no result"
    last = _last_line(log)
    return f"{reason}; its last output: {last}" if last else reason


def _last_line(log: Path) -> str:
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - _LOG_TAIL_BYTES))
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return lines[-1][:200] if lines else ""


def _oom_kills() -> int | None:
    """The kernel's count of out-of-memory kills in this process's cgroup (v2), when readable."""
    try:
        path = Path("/proc/self/cgroup").read_text().strip().splitlines()[-1].split(":", 2)[2]
        for line in (Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, IndexError, ValueError):
        return None
    return None
