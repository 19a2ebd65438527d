"""How requests are batched and queued: data, like the dynamic_batching block of a Triton model config."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchingPolicy:
    """Triton's dynamic batching settings and queue policy.

    max_batch: the most samples in one batch (0: the model cannot batch; requests run one by one,
    as they come). preferred: batch sizes sent as soon as the queue reaches one. max_queue_delay_us:
    how long a batch that is neither full nor preferred waits for more, counted from its oldest
    request. max_queue_size: requests waiting at most (0: unbounded); one more is rejected at once.
    timeout_us: a request that waited longer is rejected, never run (0: no timeout).
    """

    max_batch: int = 8
    preferred: tuple[int, ...] = ()
    max_queue_delay_us: int = 0
    max_queue_size: int = 0
    timeout_us: int = 0

    def __post_init__(self) -> None:
        if self.max_batch < 0:
            raise ValueError(f"max batch must be >= 0, got {self.max_batch}")
        for name in ("max_queue_delay_us", "max_queue_size", "timeout_us"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        too_big = [p for p in self.preferred if p < 1 or p > max(self.max_batch, 1)]
        if too_big:
            raise ValueError(f"preferred batch sizes must be between 1 and max batch {self.max_batch}, "
                             f"got {', '.join(map(str, too_big))}")

    @property
    def batching(self) -> bool:
        return self.max_batch > 0

    @property
    def largest(self) -> int:
        """The most samples one batch takes (a model that cannot batch takes one request)."""
        return max(self.max_batch, 1)
