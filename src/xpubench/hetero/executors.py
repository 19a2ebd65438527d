"""Where a part runs: a native thread pinned to its CPUs, or a process of its own pinned to them that reads
its rows from shared memory. Both open the part's backend where it runs, so every runtime thread is born
pinned, and both time the part's own work (`busy_ns`) inside it."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from xpubench.backends.base import Backend
    from xpubench.hetero.parts import Part
    from xpubench.models import Workload


def pin_here(cpus: Sequence[int]) -> None:
    """Pin the calling thread (Linux: pid 0 is the caller) to `cpus`; nothing when none are given."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))


def open_backend(part: Part, workload: Workload, artifact: Any = None) -> Backend:
    """The part's backend on its artifact (the workload's, converted through the converter graph, unless an
    `artifact` path is given); RuntimeError with the part's reason when it cannot run here."""
    from xpubench.backends import get_backend

    reason = part.unavailable()
    if reason:
        raise RuntimeError(f"{part.spec}: {reason}")
    cls = get_backend(part.backend)
    if artifact is None:
        kinds = cls.artifact_kinds(part.precision, dict(part.options))
        reasons = [workload.artifacts.reason(k) for k in kinds]
        if all(reasons):
            raise RuntimeError(f"{part.spec}: {reasons[0]}")
        artifact = workload.artifact(kinds[reasons.index(None)])
    return cls(artifact, device=part.device, threads=max(1, len(part.cpus)), precision=part.precision,
               options=dict(part.options))


def run_timed(backend: Backend, arrays: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int, int]:
    """One end-to-end call (inputs handed over, outputs back as host arrays), its start and end in
    perf_counter_ns (one clock for every thread and process of the host: a trace lines them up)."""
    t0 = time.perf_counter_ns()
    outputs = backend.fetch(backend.infer(backend.prepare(arrays)))
    return [np.asarray(o) for o in outputs], t0, time.perf_counter_ns()


def run_once(backend: Backend, arrays: Sequence[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """One end-to-end call and its time in ns."""
    outputs, t0, t1 = run_timed(backend, arrays)
    return outputs, t1 - t0


class ThreadPart:
    """A part in a native thread pinned to its CPUs: the runtimes release the GIL while they compute."""

    kind = "thread"

    def __init__(self, part: Part, workload: Workload, artifact: Any = None) -> None:
        self.part = part
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"part-{part.backend}", initializer=pin_here,
                                        initargs=(part.cpus,))
        self.backend: Backend = self._pool.submit(open_backend, part, workload, artifact).result()

    def submit(self, arrays: Sequence[np.ndarray]) -> Future:
        """Future of (outputs, start_ns, end_ns) for these rows."""
        return self._pool.submit(run_timed, self.backend, arrays)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` in the part's pinned thread and wait for it."""
        return self._pool.submit(fn, *args).result()

    def model_bytes(self) -> int:
        return self.backend.model_bytes()

    def close(self) -> None:
        self._pool.submit(self.backend.close).result()
        self._pool.shutdown()


class ProcessPart:
    """A part in a process of its own (spawned, pinned), fed through shared memory: the parent writes a
    batch's rows once, each process reads its rows and writes its outputs' rows; a pipe carries only the
    row range and the run's start and end."""

    kind = "process"

    def __init__(self, part: Part, workload: Workload, artifact: Any = None) -> None:
        self.part = part
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_process_main, args=(child, part, workload, artifact), daemon=True)
        self._process.start()
        answer = self._conn.recv()
        if isinstance(answer, BaseException):
            self._process.join()
            raise answer
        self._bytes = answer
        self._pending: tuple[Any, int, int] | None = None

    def attach(self, buffers: Any) -> None:
        """Tell the process which shared buffers hold the batch and its outputs (SharedBatch.names())."""
        self._conn.send(("attach", buffers))
        self._conn.recv()

    def output_specs(self) -> list[tuple[tuple[int, ...], np.dtype]]:
        """The outputs' sample shapes and types, from one row of the attached inputs."""
        self._conn.send(("shapes",))
        return self.wait()

    def start(self, begin: int, end: int) -> None:
        self._conn.send(("run", begin, end))

    def wait(self) -> Any:
        """The answer to the last message: for `start`, the run's (start_ns, end_ns) on the host's clock."""
        answer = self._conn.recv()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def model_bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        if self._process.is_alive():
            self._conn.send(("stop",))
            self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


class SharedBatch:
    """Shared memory for one batch of inputs and its outputs, as numpy arrays in the parent and the parts."""

    def __init__(self, inputs: Sequence[tuple[tuple[int, ...], np.dtype]],
                 outputs: Sequence[tuple[tuple[int, ...], np.dtype]]) -> None:
        from multiprocessing import shared_memory

        self._memory = []
        self.inputs, self.outputs = [], []
        for specs, arrays in ((inputs, self.inputs), (outputs, self.outputs)):
            for shape, dtype in specs:
                size = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
                memory = shared_memory.SharedMemory(create=True, size=size)
                self._memory.append(memory)
                arrays.append(np.ndarray(shape, dtype, buffer=memory.buf))
        self.specs = (tuple(inputs), tuple(outputs))

    def names(self) -> tuple[Any, ...]:
        return (self.specs, [m.name for m in self._memory])

    def close(self) -> None:
        self.inputs, self.outputs = [], []
        for memory in self._memory:
            memory.close()
            memory.unlink()


def _process_main(conn: Any, part: Part, workload: Workload, artifact: Any) -> None:
    """A process part's life: pin, open the backend, then run the row ranges it is sent until told to stop."""
    from multiprocessing import shared_memory

    try:
        pin_here(part.cpus)
        backend = open_backend(part, workload, artifact)
        conn.send(backend.model_bytes())
    except Exception as exc:
        conn.send(RuntimeError(f"{part.spec}: {type(exc).__name__}: {exc}"))
        return
    inputs: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    memory: list[Any] = []
    while True:
        message = conn.recv()
        if message[0] == "stop":
            break
        if message[0] == "attach":
            (in_specs, out_specs), names = message[1]
            memory = [shared_memory.SharedMemory(name=n) for n in names]
            views = [np.ndarray(shape, dtype, buffer=m.buf)
                     for (shape, dtype), m in zip([*in_specs, *out_specs], memory, strict=True)]
            inputs, outputs = views[: len(in_specs)], views[len(in_specs):]
            conn.send(True)
            continue
        if message[0] == "shapes":  # one row of the attached inputs: the outputs' sample shapes and types
            try:
                result = [np.asarray(o) for o in backend.fetch(backend.infer(backend.prepare([a[:1] for a in inputs])))]
                conn.send([(o.shape[1:], o.dtype) for o in result])
            except Exception as exc:
                conn.send(RuntimeError(f"{part.spec}: {type(exc).__name__}: {exc}"))
            continue
        _, begin, end = message
        try:
            t0 = time.perf_counter_ns()
            result = backend.fetch(backend.infer(backend.prepare([a[begin:end] for a in inputs])))
            for target, value in zip(outputs, result, strict=True):
                target[begin:end] = value
            conn.send((t0, time.perf_counter_ns()))
        except Exception as exc:
            conn.send(RuntimeError(f"{part.spec}: {type(exc).__name__}: {exc}"))
    inputs, outputs = [], []
    backend.close()
    for m in memory:
        m.close()


class Composite:
    """What a composite cell (data-parallel or pipeline) shows the measurement loop, as a backend does: its
    clock, its outputs already on the host, no delegate, the size of every part's artifact, and its parts closed
    together. A subclass fills `_runners` and implements `prepare` and `infer`."""

    clock = staticmethod(time.perf_counter_ns)
    _runners: list[Any]

    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        raise NotImplementedError

    def infer(self, prepared: Any) -> list[np.ndarray]:
        raise NotImplementedError

    def fetch(self, result: list[np.ndarray]) -> list[np.ndarray]:
        return result

    def predict(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.fetch(self.infer(self.prepare(arrays)))

    def delegated_fraction(self) -> float | None:
        return None

    def model_bytes(self) -> int:
        return sum(r.model_bytes() for r in self._runners)

    def close(self) -> None:
        for runner in self._runners:
            runner.close()
        self._runners = []
