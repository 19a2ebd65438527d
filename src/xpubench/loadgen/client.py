"""One client process of a load level: its senders (threads, each with its own client of the endpoint) send
requests from a shared start time until the level's end, and every request's times come back raw.

Closed loop: each sender sends its next request as soon as its last is answered. Open loop: senders take the
process's scheduled arrivals in order and send each at its time; a send that is late is recorded with its lag,
and its latency still counts from the scheduled time (no coordinated omission). Arrivals still unsent when the
level's drain time is over are returned unsent: nothing waits without bound.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xpubench.loadgen.transport import Endpoint, TensorSpec, connect, request_pool

SPIN_NS = 200_000  # sleep until this close to an arrival, then yield until it: a sleep wakes up late
NOT_DONE = -1


@dataclass(frozen=True)
class LoadClientTask:
    """A launcher's task: one client process's part of one load level. Times are ns from the level's start,
    which is `start_at` on the wall clock (time.time()) of every client process."""

    endpoint: Endpoint
    model: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[str, ...]
    batch: int
    batching: bool
    senders: int
    start_at: float
    duration_s: float
    drain_s: float
    seed: int
    index: int
    offsets: np.ndarray | None = field(default=None, compare=False)  # open loop: this process's arrivals

    def execute(self, say: Any) -> dict[str, Any]:
        return run_client(self)


class _Records:
    """One sender's request records, merged once the level is over."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, int, int, int]] = []  # scheduled, sent, done, send, recv
        self.errors = 0
        self.error: str | None = None


def run_client(task: LoadClientTask) -> dict[str, Any]:
    pool = request_pool(list(task.inputs), task.batch, task.batching, task.seed + task.index)
    inputs = list(task.inputs)
    outputs = list(task.outputs)
    clients = [connect(task.endpoint) for _ in range(task.senders)]
    records = [_Records() for _ in clients]
    base = time.perf_counter_ns() + int((task.start_at - time.time()) * 1e9)
    late_s = max(0.0, (time.perf_counter_ns() - base) / 1e9)  # started after the shared start: in the warm-up
    end = base + int(task.duration_s * 1e9)
    hard_stop = end + int(task.drain_s * 1e9)
    offsets = task.offsets
    state = {"next": 0, "in_flight": 0, "max_in_flight": 0}
    lock = threading.Lock()

    def send(client: Any, record: _Records, k: int, scheduled: int) -> None:
        with lock:
            state["in_flight"] += 1
            state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        sent = time.perf_counter_ns()
        try:
            timed = client.infer(task.model, pool[k % len(pool)], inputs, outputs)
            done = time.perf_counter_ns()
            record.rows.append((scheduled - base, sent - base, done - base, timed.send_ns, timed.recv_ns))
        except Exception as exc:  # the server refused or failed it: counted, the level goes on
            record.errors += 1
            record.error = record.error or f"{type(exc).__name__}: {exc}"[:300]
            record.rows.append((scheduled - base, sent - base, NOT_DONE, 0, 0))
        finally:
            with lock:
                state["in_flight"] -= 1

    def closed_loop(i: int) -> None:
        k = i
        _sleep_until(base)
        while (now := time.perf_counter_ns()) < end:
            send(clients[i], records[i], k, now)
            k += task.senders

    def open_loop(i: int) -> None:
        assert offsets is not None
        while True:
            with lock:
                k = state["next"]
                state["next"] += 1
            if k >= offsets.size:
                return
            scheduled = base + int(offsets[k])
            _sleep_until(scheduled)
            if time.perf_counter_ns() >= hard_stop:
                records[i].rows.append((scheduled - base, NOT_DONE, NOT_DONE, 0, 0))
                continue
            send(clients[i], records[i], k, scheduled)

    cpu_before = time.process_time()
    wall_before = time.perf_counter_ns()
    target = closed_loop if offsets is None else open_loop
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, (hard_stop - time.perf_counter_ns()) / 1e9) + 5)
    ended = time.perf_counter_ns()
    wall_s = (ended - max(wall_before, base)) / 1e9
    cpu_s = time.process_time() - cpu_before
    with lock:  # a sender stuck past the drain: its rows so far count, it is left behind (daemon)
        rows = [row for r in records for row in list(r.rows)]
    for client in clients:
        try:
            client.close()
        except Exception:  # closing a client stuck in a call: the process ends anyway
            pass
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 5)
    return {
        "index": task.index,
        "senders": task.senders,
        "scheduled_ns": table[:, 0], "sent_ns": table[:, 1], "done_ns": table[:, 2],
        "send_ns": table[:, 3], "recv_ns": table[:, 4],
        "errors": sum(r.errors for r in records),
        "error": next((r.error for r in records if r.error), None),
        "max_in_flight": state["max_in_flight"],
        "cpu_busy": cpu_s / wall_s if wall_s > 0 else None,
        "cpu_s": cpu_s,
        "stuck": sum(t.is_alive() for t in threads),
        "late_s": late_s,
    }


def _sleep_until(deadline_ns: int) -> None:
    while (left := deadline_ns - time.perf_counter_ns()) > 0:
        time.sleep((left - SPIN_NS) / 1e9 if left > SPIN_NS else 0)
