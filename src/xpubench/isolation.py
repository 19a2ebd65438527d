"""Worker processes: each cell of a sweep runs in a fresh process of its own, so a crash or a hang is one failed row.

The parent (the sweep) imports no ML framework. Per model, one worker trains it when it is a zoo
model used for the first time (with every CPU the sweep may use); one resolves it, computes the
float32 reference outputs once (cached on disk next to the model's artifacts), pickles the ready
Workload into the sweep's folder and, once it has answered, converts the artifacts the cells will
load; per cell, one worker loads that Workload, measures with `sweep.measure_cell` and sends the
CellResult back through a pipe.
A fresh process (not fork: TensorFlow's and ONNX Runtime's threads do not survive fork) also lets
every cell set process-wide settings, TensorFlow's thread pools, for itself.

`python -m xpubench.isolation FD PARENT_PID` is the worker: it reads one pickled task on stdin and
writes length-prefixed pickles to the pipe FD.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import pickle
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpubench.errors import UsageError

if TYPE_CHECKING:
    from xpubench.core.cell import Cell, CellResult
    from xpubench.core.measure import MeasureConfig
    from xpubench.models import Workload

DEFAULT_CELL_TIMEOUT_S = 900.0  # an emulated hls4ml cell compiles C++ for ~80 s
# Models prepared at once by `prepare_many`: nothing is measured meanwhile, and one model's
# single-threaded conversions fill the cores that another's training leaves idle.
PREPARE_AT_ONCE = 2
PREPARE_TIMEOUT_S = 3600.0  # preparing a zoo model trains it on first use
_HEADER = struct.Struct(">Q")  # the length of each pickled message on the pipe
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_BYTES = 4096

Say = Callable[[str], None]


def parse_cpus(text: str) -> tuple[int, ...]:
    """`0`, `0-3`, `0,2,4-5` -> the sorted CPU numbers; a malformed list or a CPU this process may
    not use raises UsageError."""
    cpus: set[int] = set()
    try:
        for part in (p.strip() for p in text.split(",")):
            low, dash, high = part.partition("-")
            first, last = int(low), int(high) if dash else int(low)
            if first < 0 or last < first:
                raise ValueError
            cpus.update(range(first, last + 1))
    except ValueError:
        raise UsageError(f"--pin {text!r}: give CPU numbers such as 0, 0-1 or 0,2") from None
    allowed = _allowed_cpus()
    if not cpus <= set(allowed):
        raise UsageError(f"--pin {text!r}: this process may run on CPUs {format_cpus(allowed)} only")
    return tuple(sorted(cpus))


def format_cpus(cpus: Iterable[int]) -> str:
    """(0, 1, 2, 5) -> `0-2,5`."""
    ranges: list[list[int]] = []
    for cpu in sorted(cpus):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def _allowed_cpus() -> tuple[int, ...]:
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


# -- what travels to and from the workers ------------------------------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """How a worker finds a model again: a zoo name or a path, the --data file and --shape."""

    name: str
    data: Any = None  # a Path or DataFile
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class Prepared:
    """A model made ready once per sweep; each cell's worker starts from it."""

    source: ModelSource
    workload_file: Path | None  # the resolved Workload with its reference, pickled; None: resolve again
    reference_file: Path | None  # the cached float32 reference outputs (.npz)
    reference_note: str | None = None  # why there is no reference, when there is none
    # The rows of cells that cannot run here at all (their backend says why), keyed by cell key:
    # measure_cell answers those at once, so they need no worker of their own.
    screened: dict[str, CellResult] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class _TrainTask:
    """A zoo model's training on first use, in a worker of its own: there TensorFlow has every CPU the
    sweep may use, while the prepare worker's is held to the float32 reference's one thread."""

    name: str

    def execute(self, say: Say) -> None:
        from xpubench.models.training import ensure_trained, train_with_onednn
        from xpubench.models.zoo import lookup

        train_with_onednn()
        found = lookup(self.name)
        assert found is not None
        ensure_trained(found[0], say, found[1])


@dataclass
class _PrepareTask:
    source: ModelSource
    folder: Path
    with_reference: bool = True
    cells: tuple[Cell, ...] = ()  # to screen
    measure_args: tuple[Any, ...] = ()  # measure_cell's arguments after the workload
    # Set by execute in the worker: the workload and the cells left to convert for `afterwards`.
    _ahead: tuple[Any, list[Cell]] | None = field(default=None, init=False, repr=False)

    def execute(self, say: Say) -> Prepared:
        from xpubench.models import REFERENCE_BACKEND, resolve

        source_format = _source_format(self.source.name)
        if source_format is not None:
            # As before isolation: the reference runtime gets one thread, set before anything starts it.
            # Not for a name that is no model: refusing it must not wait for TensorFlow to import.
            _claim(REFERENCE_BACKEND[source_format], 1)
        workload = resolve(self.source.name, say, self.source.data, dict(self.source.shapes))
        workload.fidelity_inputs()  # a dynamic dimension with no data to fix it is a UsageError, now
        reference_file, note = None, "its worker died"
        if self.with_reference:
            reference_file, note = _reference(workload)
        if reference_file is None:
            workload.reference = ()
        screened = _screen(self.cells, workload, self.measure_args)
        self._ahead = (workload, [c for c in self.cells if c.key not in screened])
        prepared = Prepared(self.source, None, reference_file, note, screened)
        target = self.folder / f"{hashlib.sha256(repr(self.source).encode()).hexdigest()[:16]}.workload.pkl"
        try:  # cells then skip resolving (importing scikit-learn, reading data files) in every worker
            target.write_bytes(pickle.dumps(workload, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as exc:  # an unpicklable workload only costs time
            print(f"the workload is resolved again per cell: {exc}", file=sys.stderr)
            return prepared
        return replace(prepared, workload_file=target)

    def afterwards(self, say: Say) -> None:
        """Once the answer is sent: make the artifacts the cells will load (and the float32 ONNX graph
        their roofline counts) while the source's runtime is loaded, so that a cell does not import
        TensorFlow and load the model again to convert. A converter that fails or crashes here costs
        nothing: its cell converts for itself and reports why."""
        from xpubench.backends import get_backend
        from xpubench.convert.graph import split_kind
        from xpubench.sweep import artifact_kind

        if self._ahead is None:
            return
        workload, cells = self._ahead
        kinds: dict[str, None] = {}
        for cell in cells:
            with contextlib.suppress(Exception):  # an unknown backend: its cell says so
                kind, _ = artifact_kind(get_backend(cell.backend), cell, workload)
                if kind is not None:
                    kinds[kind] = None
        # A cell that loads no ONNX graph has its roofline counted on the float32 one (roofline.onnx_graph).
        if any(split_kind(k)[0] != "onnx" for k in kinds) and workload.artifacts.reason("onnx:fp32") is None:
            kinds["onnx:fp32"] = None
        missing = [k for k in kinds if not workload.artifacts.made(k)]
        if missing:
            say(f"{self.source.name}: converting to {', '.join(missing)}")
        for kind in missing:
            with contextlib.suppress(Exception):
                workload.artifact(kind)


@dataclass(frozen=True)
class _CellTask:
    cell: Cell
    prepared: Prepared
    config: MeasureConfig
    tdp_w: float | None
    extra: tuple[Any, ...] = ()  # measure_cell's further arguments (the scenario's settings)

    def execute(self, say: Say) -> CellResult:
        from xpubench.sweep import measure_cell

        # Process-wide settings first, before a conversion can start the runtime with its defaults.
        _claim(self.cell.backend, self.cell.threads)
        workload = load_workload(self.prepared, say)
        return measure_cell(self.cell, workload, self.config, self.tdp_w, *self.extra)


def _screen(cells: Iterable[Cell], workload: Workload, measure_args: tuple[Any, ...]) -> dict[str, CellResult]:
    """measure_cell's rows for the cells whose backend is unknown or cannot run them here."""
    from xpubench.backends import get_backend
    from xpubench.sweep import artifact_kind, measure_cell

    rows = {}
    for cell in cells:
        options = dict(cell.options)
        try:
            backend = get_backend(cell.backend)
            # Its runtime or device is missing, or no converter chain makes its artifact.
            cannot = bool(backend.unavailable_reason(cell.device, cell.precision, options)) or (
                artifact_kind(backend, cell, workload)[0] is None
            )
        except KeyError:
            cannot = True
        except Exception:  # the cell's own worker will find out
            continue
        if cannot:
            rows[cell.key] = measure_cell(cell, workload, *measure_args)
    return rows


def load_workload(prepared: Prepared, say: Say) -> Workload:
    """The prepared Workload: unpickled, or resolved again with the cached reference attached."""
    if prepared.workload_file is not None:
        return pickle.loads(prepared.workload_file.read_bytes())
    from xpubench.models import resolve

    source = prepared.source
    workload = resolve(source.name, say, source.data, dict(source.shapes))
    workload.reference = _load_reference(prepared.reference_file) if prepared.reference_file else ()
    return workload


def _claim(backend: str, threads: int) -> None:
    from xpubench.backends import get_backend

    with contextlib.suppress(KeyError, ImportError, RuntimeError):  # the cell itself will say why
        get_backend(backend).claim_process(threads)


def _source_format(name: str) -> str | None:
    """The format `resolve` will find `name` in (zoo models are Keras); None when it is no model."""
    from xpubench.models import USER_FORMATS
    from xpubench.models.zoo import lookup

    if lookup(name) is not None:
        return "keras"
    path = Path(name)
    if path.is_dir():
        return "savedmodel" if (path / "saved_model.pb").is_file() else None
    return USER_FORMATS.get(path.suffix.lower())


# -- the float32 reference, cached on disk -----------------------------------------------------------


def _reference(workload: Workload) -> tuple[Path | None, str | None]:
    """The reference outputs' .npz next to the model's artifacts, keyed by the source artifact's
    content and the fidelity inputs; computed when missing. (None, why) when it cannot be had."""
    import numpy as np

    from xpubench.sweep import one_line, reference_outputs

    key = hashlib.sha256(_digest(workload.artifacts.sources[workload.source_kind]).encode())
    for array in workload.fidelity_inputs():
        key.update(f"{array.shape}{array.dtype}".encode())
        key.update(np.ascontiguousarray(array).tobytes())
    path = workload.artifacts.folder / f"reference-{key.hexdigest()[:16]}.npz"
    if path.exists():
        with contextlib.suppress(Exception):  # a damaged cache file is computed again
            workload.reference = _load_reference(path)
            return path, None
    try:
        outputs, name = reference_outputs(workload, 1)
    except Exception as exc:  # fidelity is then unknown; the cells are still measured
        return None, one_line(exc)
    workload.reference = (outputs, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.npz")
    np.savez(staged, name=np.array(name), **{f"out{i}": np.asarray(o) for i, o in enumerate(outputs)})
    staged.replace(path)
    return path, None


def _load_reference(path: Path) -> tuple[list[Any], str]:
    import numpy as np

    with np.load(path, allow_pickle=False) as stored:
        count = sum(1 for k in stored.files if k.startswith("out"))
        return [stored[f"out{i}"] for i in range(count)], str(stored["name"])


def _digest(path: Path) -> str:
    """Of a file, or of every file in a folder (a SavedModel) with its relative name."""
    h = hashlib.sha256()
    for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if file.is_file():
            h.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
            with file.open("rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


# -- the parent's side -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerInfo:
    """How a cell's worker ran, stored with the cell."""

    pid: int
    affinity: tuple[int, ...]  # the CPUs the worker could run on
    wall_s: float
    max_rss_mib: float | None

    def record(self) -> dict[str, Any]:
        return {
            "affinity": list(self.affinity),
            "worker": {"pid": self.pid, "wall_s": round(self.wall_s, 3), "max_rss_mib": self.max_rss_mib},
        }


@dataclass(frozen=True)
class _Outcome:
    kind: str  # result | usage | error | died
    payload: Any
    info: WorkerInfo


class Workers:
    """Runs each task in a fresh worker process with a time limit; holds the sweep's folder.

    Use as a context manager; `close()` removes the folder. `pin` is the CPU affinity of every
    worker; `cwd` their working folder (where relative model and data paths were given).
    """

    def __init__(
        self,
        timeout_s: float = DEFAULT_CELL_TIMEOUT_S,
        pin: Iterable[int] | None = None,
        say: Say | None = None,
        cwd: Path | str | None = None,
    ) -> None:
        if not timeout_s > 0:
            raise UsageError(f"--cell-timeout must be a positive number of seconds, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.pin = tuple(sorted(pin)) if pin else None
        self.say: Say = say or (lambda _msg: None)
        self.cwd = Path(cwd) if cwd else Path.cwd()
        self.folder = Path(tempfile.mkdtemp(prefix="xpubench-sweep-"))
        self._prepared: dict[ModelSource, Prepared | str] = {}
        self._stopping = threading.Event()  # set when prepare_many is interrupted: its workers stop

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def prepare(
        self,
        name: str,
        data: Any = None,
        shapes: Mapping[str, tuple[int, ...]] | Iterable = (),
        cells: Iterable[Cell] = (),
        measure_args: tuple[Any, ...] = (),
    ) -> Prepared | str:
        """The model made ready for its cells, once per sweep; a string says why it could not be.
        The user's mistakes (a bad file, a missing --shape) raise UsageError. Of `cells`, those
        whose backend cannot run them here get their rows now, from
        `measure_cell(cell, workload, *measure_args)`; `measure` returns those without a worker."""
        items = shapes.items() if isinstance(shapes, Mapping) else shapes
        source = ModelSource(name, data, tuple(sorted((k, tuple(v)) for k, v in items)))
        if source not in self._prepared:
            self._prepared[source] = self._prepare(_PrepareTask(source, self.folder, True, tuple(cells), measure_args))
        return self._prepared[source]

    def prepare_many(self, requests: Iterable[tuple[Any, ...]]) -> list[Prepared | str]:
        """`prepare(*request)` for each request, PREPARE_AT_ONCE at a time, in order. Only while no
        cell is measured: the workers share the cores. Ctrl-C stops every one of them."""
        from concurrent.futures import ThreadPoolExecutor

        requests = list(requests)
        with ThreadPoolExecutor(max_workers=PREPARE_AT_ONCE) as pool:
            try:
                return list(pool.map(lambda request: self.prepare(*request), requests))
            except BaseException:
                self._stopping.set()  # the other threads' workers are killed within a second
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                self._stopping.clear()

    def _prepare(self, task: _PrepareTask) -> Prepared | str:
        from xpubench.models.training import untrained

        source = task.source
        if untrained(source.name):
            trained = self._run(_TrainTask(source.name), PREPARE_TIMEOUT_S)
            if trained.kind == "usage":
                raise UsageError(trained.payload)
            if trained.kind != "result":
                return f"training {source.name} failed: {trained.payload}"
        outcome = self._run(task, max(self.timeout_s, PREPARE_TIMEOUT_S))
        if outcome.kind != "result" and outcome.kind != "usage":
            # Perhaps the reference runtime crashed: the cells can still run without fidelity figures.
            self.say(f"{source.name}: preparing it failed ({outcome.payload}); again without the float32 reference")
            retry = self._run(replace(task, with_reference=False), PREPARE_TIMEOUT_S)
            if retry.kind == "result":
                return replace(retry.payload, reference_note=f"its worker failed: {outcome.payload}")
            outcome = retry
        if outcome.kind == "usage":
            raise UsageError(outcome.payload)
        if outcome.kind != "result":
            return f"preparing {source.name} failed: {outcome.payload}"
        prepared: Prepared = outcome.payload
        if prepared.reference_note:
            from xpubench.models import REFERENCE_BACKEND

            backend = REFERENCE_BACKEND.get(_source_format(source.name) or "", "its runtime")
            self.say(f"{source.name}: no float32 reference from {backend} ({prepared.reference_note}): "
                     "no fidelity figures")
        return prepared

    def measure(
        self, cell: Cell, prepared: Prepared | str, config: MeasureConfig, tdp_w: float | None, *extra: Any
    ) -> tuple[CellResult, WorkerInfo | None]:
        """`sweep.measure_cell(cell, workload, config, tdp_w, *extra)` in a worker of its own; a crash,
        a hang or an error is a `failed` row."""
        from xpubench.core.cell import CellResult

        if isinstance(prepared, str):
            return CellResult.not_measured(cell, "failed", prepared), None
        if cell.key in prepared.screened:
            return prepared.screened[cell.key], None
        task = _CellTask(cell, replace(prepared, screened={}), config, tdp_w, extra)
        outcome = self._run(task, self.timeout_s)
        if outcome.kind == "result":
            return outcome.payload, outcome.info
        return CellResult.not_measured(cell, "failed", str(outcome.payload)), outcome.info

    def _run(self, task: Any, timeout_s: float) -> _Outcome:
        """Start a worker for `task`, relay what it says, and wait for its answer, its death or the limit."""
        log = tempfile.NamedTemporaryFile(prefix="worker-", suffix=".log", dir=self.folder, delete=False)
        read_end, write_end = os.pipe()
        oom_before = _oom_kills()
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "xpubench.isolation", str(write_end), str(os.getpid())],
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
        messages: list[tuple[str, Any]] = []
        status: int | None = None
        rusage: Any = None
        timed_out = False
        try:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # it died at once: its exit status says why
                proc.stdin.write(pickle.dumps((task, self.pin), protocol=pickle.HIGHEST_PROTOCOL))
                proc.stdin.close()
            timed_out = not self._relay(read_end, started + timeout_s, messages)
            if timed_out:
                _kill_group(proc.pid)
            status, rusage = _reap(proc.pid, time.monotonic() + 10)
        finally:
            os.close(read_end)
            if status is None:  # interrupted (Ctrl-C, SIGTERM): the worker must not measure on
                _kill_group(proc.pid)
                status, rusage = _reap(proc.pid, None)
            _kill_group(proc.pid)  # anything it started and left behind
            proc.returncode = os.waitstatus_to_exitcode(status) if status is not None else -signal.SIGKILL
        wall_s = time.monotonic() - started
        results = {kind: payload for kind, payload in messages}
        affinity = results.get("affinity") or self.pin or _allowed_cpus()
        max_rss = round(rusage.ru_maxrss / 1024, 1) if rusage is not None else None
        info = WorkerInfo(proc.pid, tuple(affinity), wall_s, max_rss)
        log_path = Path(log.name)
        try:
            for kind in ("result", "usage", "error"):
                if kind in results:
                    return _Outcome(kind, results[kind], info)
            if timed_out:
                return _Outcome("died", f"worker exceeded the {timeout_s:g} s limit", info)
            return _Outcome("died", _death_reason(proc.returncode, oom_before, log_path), info)
        finally:
            log_path.unlink(missing_ok=True)

    def _relay(self, fd: int, deadline: float, messages: list[tuple[str, Any]]) -> bool:
        """Read the worker's messages until it closes the pipe (True) or the deadline passes (False)."""
        buffer = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping.is_set():
                return False
            ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return True
            buffer += chunk
            while len(buffer) >= _HEADER.size:
                (size,) = _HEADER.unpack_from(buffer)
                if len(buffer) < _HEADER.size + size:
                    break
                kind, payload = pickle.loads(bytes(buffer[_HEADER.size : _HEADER.size + size]))
                del buffer[: _HEADER.size + size]
                if kind == "say":
                    self.say(payload)
                else:
                    messages.append((kind, payload))


def _reap(pid: int, deadline: float | None) -> tuple[int | None, Any]:
    """Wait for the worker's exit status and resource usage; kill it if it lingers past `deadline`."""
    while True:
        done, status, rusage = os.wait4(pid, os.WNOHANG if deadline is not None else 0)
        if done:
            return status, rusage
        if deadline is not None and time.monotonic() > deadline:
            _kill_group(pid)
            deadline = None
        else:
            time.sleep(0.01)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


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


# -- the worker's side -------------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """A worker must not go on measuring when its sweep is gone (kill -9 of the parent)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)
    if not sys.platform.startswith("linux"):

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()


class _Channel:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, kind: str, payload: Any) -> None:
        data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_HEADER.pack(len(data)) + data)
        while view:
            view = view[os.write(self.fd, view) :]

    def say(self, message: str) -> None:
        self.send("say", message)


def main(argv: list[str]) -> None:
    """The worker: one task from stdin, its answer on the pipe, then exit without tearing runtimes down."""
    fd, parent = int(argv[0]), int(argv[1])
    _die_with_parent(parent)
    os.set_inheritable(fd, False)  # what the task starts (g++, compile workers) must not hold the pipe open
    channel = _Channel(fd)
    try:
        task, pin = pickle.load(sys.stdin.buffer)
        if pin:
            os.sched_setaffinity(0, pin)  # before any runtime sizes its thread pools
        channel.send("affinity", _allowed_cpus())
        channel.send("result", task.execute(channel.say))
        if hasattr(task, "afterwards"):  # work that only saves later workers time: its failure is no one's
            with contextlib.suppress(Exception):
                task.afterwards(channel.say)
    except UsageError as exc:
        channel.send("usage", str(exc))
    except MemoryError:
        channel.send("error", "worker ran out of memory (MemoryError)")
    except BaseException as exc:  # whatever it is, the parent gets it as the reason
        traceback.print_exc()
        from xpubench.sweep import one_line

        channel.send("error", one_line(exc))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # Skip interpreter teardown: some runtimes crash or hang in their atexit handlers, and the
        # answer is already sent.
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
