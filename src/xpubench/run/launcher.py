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
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from xpubench.hardware.host import allowed_cpus
from xpubench.run.worker import HEADER

Say = Callable[[str], None]
_LOG_TAIL_BYTES = 4096
WARM_WORKERS = 6  # idle workers a ProcessLauncher keeps for tasks with a worker_key
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


class _Worker:
    """One live worker process: its pipe, its log, and what it said about itself."""

    def __init__(self, proc: subprocess.Popen, read_fd: int, log: Path) -> None:
        self.proc = proc
        self.read_fd = read_fd
        self.log = log
        self.affinity: tuple[int, ...] | None = None
        self.buffer = bytearray()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, task: Task, pin: tuple[int, ...] | None, keep: bool) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):  # it died: its exit status says why
            self.proc.stdin.write(pickle.dumps((task, pin, keep), protocol=pickle.HIGHEST_PROTOCOL))
            self.proc.stdin.flush()
            if not keep:
                self.proc.stdin.close()

    def peak_rss_mib(self) -> float | None:
        """Its peak resident memory so far (VmHWM), while it lives."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
        except (OSError, ValueError, IndexError):
            return None
        return None


class ProcessLauncher:
    """Runs each task in a worker process of this machine, `pin`ned to CPUs, in the folder `cwd` (where
    relative model and data paths were given). Use as a context manager.

    A task with a `worker_key` may run in a warm worker left by an earlier task of the same key (up to `warm`
    such workers are kept): it saves the start of a process and its imports, which is not what a benchmark
    measures. Every other task gets a fresh process, which exits when the task is done.
    """

    slots = 1  # one task at a time: cells are measured one after another, on a quiet machine
    remote = False

    def __init__(
        self, pin: Iterable[int] | None = None, cwd: Path | str | None = None, warm: int = WARM_WORKERS
    ) -> None:
        self.pin = tuple(sorted(pin)) if pin else None
        self.cwd = Path(cwd) if cwd else Path.cwd()
        self.warm = warm
        self._logs = Path(tempfile.mkdtemp(prefix="xpubench-workers-"))
        self._host = socket.gethostname()
        self._running: set[int] = set()  # worker pids, for interrupt()
        self._interrupted: set[int] = set()
        self._idle: OrderedDict[Any, _Worker] = OrderedDict()

    def __enter__(self) -> ProcessLauncher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        while self._idle:
            self._retire(self._idle.popitem(last=False)[1])
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
        """Run `task` in a worker, relay what it says, and wait for its answer, its death or the limit."""
        say = say or (lambda _msg: None)
        key = getattr(task, "worker_key", None) if self.warm else None
        worker = self._idle.pop(key, None) if key is not None else None
        worker = worker or self._spawn()
        self._running.add(worker.pid)
        if started is not None:
            started(worker.pid)
        oom_before = _oom_kills()
        begun = time.monotonic()
        worker.send(task, self.pin, keep=key is not None)
        messages: list[tuple[str, Any]] = []
        ended = self._relay(worker, begun + timeout_s, messages, say, until_answer=key is not None)
        wall_s = time.monotonic() - begun
        self._running.discard(worker.pid)
        answer = next(((kind, value) for kind, value in messages if kind in ("result", "usage", "error")), None)
        if ended == "answered" and answer is not None:  # alive and waiting for the next task
            info = WorkerInfo(worker.pid, worker.affinity or (), wall_s, worker.peak_rss_mib(), self._host)
            self._idle[key] = worker
            while len(self._idle) > self.warm:
                self._retire(self._idle.popitem(last=False)[1])
            return _outcome(answer, info)
        if ended == "late":
            _signal_group(worker.pid, signal.SIGKILL)
        status, rusage = _reap(worker.pid, time.monotonic() + 10)
        _signal_group(worker.pid, signal.SIGKILL)  # anything it started and left behind
        os.close(worker.read_fd)
        max_rss = round(rusage.ru_maxrss / 1024, 1) if rusage is not None else None
        info = WorkerInfo(worker.pid, worker.affinity or self.pin or allowed_cpus(), wall_s, max_rss, self._host)
        try:
            if answer is not None:
                return _outcome(answer, info)
            if worker.pid in self._interrupted:
                self._interrupted.discard(worker.pid)
                return TaskOutcome(FAILED, "worker stopped: the run was interrupted", info)
            if ended == "late":
                return TaskOutcome(FAILED, f"worker exceeded the {timeout_s:g} s limit", info)
            returncode = os.waitstatus_to_exitcode(status) if status is not None else -signal.SIGKILL
            return TaskOutcome(FAILED, _death_reason(returncode, oom_before, worker.log), info)
        finally:
            worker.log.unlink(missing_ok=True)

    def _spawn(self) -> _Worker:
        log = tempfile.NamedTemporaryFile(prefix="worker-", suffix=".log", dir=self._logs, delete=False)
        read_end, write_end = os.pipe()
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
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
            log.close()
        return _Worker(proc, read_end, Path(log.name))

    def _retire(self, worker: _Worker) -> None:
        """A warm worker no longer needed: its stdin closed, it exits; killed if it lingers."""
        with contextlib.suppress(OSError):
            assert worker.proc.stdin is not None
            worker.proc.stdin.close()
        _reap(worker.pid, time.monotonic() + 5)
        _signal_group(worker.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.close(worker.read_fd)
        worker.log.unlink(missing_ok=True)

    def _relay(
        self, worker: _Worker, deadline: float, messages: list[tuple[str, Any]], say: Say, until_answer: bool
    ) -> str:
        """Read the worker's messages until it answers (`until_answer`: a warm worker waits for its next task),
        closes the pipe, or the deadline passes: "answered", "closed" or "late"."""
        interrupted = False
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return "late"
                ready, _, _ = select.select([worker.read_fd], [], [], min(remaining, 1.0))
                if not ready:
                    continue
                chunk = os.read(worker.read_fd, 1 << 20)
                if not chunk:
                    return "closed"
                worker.buffer += chunk
                while len(worker.buffer) >= HEADER.size:
                    (size,) = HEADER.unpack_from(worker.buffer)
                    if len(worker.buffer) < HEADER.size + size:
                        break
                    kind, payload = pickle.loads(bytes(worker.buffer[HEADER.size : HEADER.size + size]))
                    del worker.buffer[: HEADER.size + size]
                    if kind == "say":
                        say(payload)
                    elif kind == "affinity":
                        worker.affinity = tuple(payload)
                    else:
                        messages.append((kind, payload))
                        if until_answer and kind in ("result", "usage", "error"):
                            return "answered"
        except BaseException:  # interrupted (Ctrl-C, SIGTERM): the worker must not measure on
            interrupted = True
            raise
        finally:
            if interrupted:
                _signal_group(worker.pid, signal.SIGKILL)
                _reap(worker.pid, None)
                self._running.discard(worker.pid)
                with contextlib.suppress(OSError):
                    os.close(worker.read_fd)


def _outcome(answer: tuple[str, Any], info: WorkerInfo) -> TaskOutcome:
    kind, value = answer
    return TaskOutcome({"result": RESULT, "usage": USAGE}.get(kind, FAILED), value, info)


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
