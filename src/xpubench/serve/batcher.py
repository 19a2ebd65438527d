"""Triton's dynamic batcher: the scheduler between the request queue and the model instances.

Requests queue in arrival order. A free instance asks for its next batch: the longest prefix of
the queue that fits max_batch (and whose samples have the same shapes); a preferred size, when
the queue reaches one, goes at once; any other batch that is not full waits until its oldest
request has waited max_queue_delay_us. The instances know nothing of this policy.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from xpubench.serve.errors import QueueFull, QueueTimeout, ServeError, Unavailable
from xpubench.serve.policy import BatchingPolicy


@dataclass(eq=False)
class Request:
    """One inference request: its inputs (batch along axis 0), and where its answer goes.

    `done(outputs, error)` is called exactly once, from whichever thread settles the request.
    """

    inputs: list[np.ndarray]
    done: Callable[[list[np.ndarray] | None, ServeError | None], None]
    timeout_us: int = 0  # 0: the policy's
    size: int = field(init=False)
    sample_shapes: tuple = field(init=False)  # only requests whose samples have the same shapes share a batch
    arrived_ns: int = field(init=False, default=0)
    dispatched_ns: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.size = int(self.inputs[0].shape[0]) if self.inputs and self.inputs[0].ndim else 1
        self.sample_shapes = tuple(a.shape[1:] for a in self.inputs)


class DynamicBatcher:
    """The request queue and the policy that forms batches from it; thread-safe."""

    def __init__(
        self,
        policy: BatchingPolicy,
        on_rejected: Callable[[Request, ServeError], None] | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._on_rejected = on_rejected or (lambda request, error: None)
        self._queue: deque[Request] = deque()
        self._cond = threading.Condition()
        self._closed = False  # takes nothing new
        self._flushing = False  # sends what it holds without waiting for more

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    def submit(self, request: Request) -> None:
        """Queue `request`, or raise QueueFull / Unavailable at once."""
        with self._cond:
            if self._closed:
                raise Unavailable("the server is shutting down")
            limit = self.policy.max_queue_size
            if limit and len(self._queue) >= limit:
                raise QueueFull(f"the queue is full ({limit} requests waiting): try again later")
            request.arrived_ns = self._clock()
            self._queue.append(request)
            self._cond.notify_all()

    def next_batch(self) -> list[Request] | None:
        """Block until a batch is due and return it; None once closed and empty."""
        while True:
            expired: list[Request] = []
            with self._cond:
                while True:
                    now = self._clock()
                    expired = self._expire(now)
                    if expired:
                        break
                    if not self._queue:
                        if self._closed:
                            return None
                        self._cond.wait()
                        continue
                    count = self._due(now)
                    if count:
                        batch = [self._queue.popleft() for _ in range(count)]
                        for request in batch:
                            request.dispatched_ns = now
                        if self._queue:
                            self._cond.notify_all()  # another free instance may take the rest
                        return batch
                    self._cond.wait(self._wait_s(now))
            for request in expired:  # answered outside the lock
                error = QueueTimeout("the request waited in the queue past its timeout")
                self._on_rejected(request, error)
                request.done(None, error)

    def flush(self) -> None:
        """Send what is queued without waiting for more (at shutdown)."""
        with self._cond:
            self._flushing = True
            self._cond.notify_all()

    def close(self) -> None:
        """Take no new request; the instances drain the queue, then next_batch returns None."""
        with self._cond:
            self._closed = self._flushing = True
            self._cond.notify_all()

    def _due(self, now: int) -> int:
        """How many requests from the head form the batch to send now; 0: wait for more."""
        policy = self.policy
        if not policy.batching:
            return 1
        total = count = preferred = 0
        full = False
        head = self._queue[0].sample_shapes
        for request in self._queue:
            if total + request.size > policy.max_batch or request.sample_shapes != head:
                full = True
                break
            total += request.size
            count += 1
            if total in policy.preferred:
                preferred = count
            if total == policy.max_batch:
                full = True
                break
        if preferred:
            return preferred
        if count == 0:  # a request larger than max_batch is refused before it queues
            return 1
        waited_us = (now - self._queue[0].arrived_ns) / 1e3
        if full or self._flushing or waited_us >= policy.max_queue_delay_us:
            return count
        return 0

    def _wait_s(self, now: int) -> float:
        """Until the oldest request's queue delay runs out, or the first timeout, whichever is sooner."""
        until = self._queue[0].arrived_ns + self.policy.max_queue_delay_us * 1000
        timeouts = [r.arrived_ns + self._timeout_us(r) * 1000 for r in self._queue if self._timeout_us(r)]
        if timeouts:
            until = min(until, *timeouts)
        return max(until - now, 0) / 1e9 + 1e-6

    def _timeout_us(self, request: Request) -> int:
        return request.timeout_us or self.policy.timeout_us

    def _expire(self, now: int) -> list[Request]:
        if not self.policy.timeout_us and not any(r.timeout_us for r in self._queue):
            return []
        expired = [r for r in self._queue if self._timeout_us(r) and now - r.arrived_ns > self._timeout_us(r) * 1000]
        for request in expired:
            self._queue.remove(request)
        return expired
