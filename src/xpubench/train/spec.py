"""What one training cell runs: the model, the engine (strategy), the worker count, the scaling mode and the
batches; and the stored Cell it becomes. Framework-free."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xpubench.core.cell import Cell
from xpubench.errors import UsageError

# The engines, each a real distribution engine of its framework (never a loop of ours around processes).
STRATEGIES: dict[str, str] = {
    "torch-ddp": "PyTorch DistributedDataParallel, worker processes started by torchrun (gloo on CPU, NCCL on CUDA)",
    "tf-multiworker": "tf.distribute.MultiWorkerMirroredStrategy, one process per worker (TF_CONFIG, RING)",
    "tf-mirrored": "tf.distribute.MirroredStrategy over N logical CPU devices of one process",
    "tf-tpu": "tf.distribute.TPUStrategy (needs a Cloud TPU)",
}
SCALING = ("weak", "strong")
SCENARIO = "train"
DEFAULT_STEPS = 20
WARMUP_STEPS = 2  # traced or first-touch steps, trained but not timed


@dataclass(frozen=True)
class Fault:
    """A failure to inject, to check that a lost worker ends the cell as `failed`, not a hang: worker `rank`
    kills itself (SIGKILL, as the kernel or a scheduler would) when it reaches `step`."""

    rank: int
    step: int


@dataclass(frozen=True)
class TrainSpec:
    """One training cell: `model` (a zoo name, NAME:SIZE) trained by `strategy` over `workers` workers.

    Weak scaling keeps `batch` per worker (the global batch grows with the workers); strong scaling keeps
    `batch` as the global batch (each worker gets batch / workers). `steps` are timed after WARMUP_STEPS."""

    model: str
    strategy: str
    workers: int
    scaling: str = "weak"
    batch: int = 16
    steps: int = DEFAULT_STEPS
    warmup: int = WARMUP_STEPS
    threads: int = 1  # intra-op threads of each worker
    learning_rate: float | None = None  # None: the zoo entry's
    input_delay_s: float = 0.0  # a sleep in each step's input: a starved pipeline, on purpose
    checksums: int = 0  # report each worker's weight checksum after the first `checksums` steps
    collective_timeout_s: float = 120.0  # a collective that waits longer fails the cell (a peer is gone)
    seed: int = 1234
    fault: Fault | None = field(default=None)
    # False: the concurrent compute probe of tf-mirrored, whose replicas share one process: each replica
    # applies its own gradients, no all-reduce, so the probe times their compute side by side and nothing else.
    collectives: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy {self.strategy!r}: choose from {', '.join(STRATEGIES)}")
        if self.scaling not in SCALING:
            raise UsageError(f"unknown scaling mode {self.scaling!r}: choose weak, strong or both")
        if self.workers < 1 or self.batch < 1 or self.steps < 1 or self.threads < 1:
            raise UsageError("workers, batch, steps and threads must be positive")
        if self.scaling == "strong" and self.batch % self.workers:
            raise UsageError(f"strong scaling splits the global batch {self.batch} over {self.workers} workers: "
                             "give a batch divisible by every worker count")

    @property
    def local_batch(self) -> int:
        """Samples each worker takes per step."""
        return self.batch if self.scaling == "weak" else self.batch // self.workers

    @property
    def global_batch(self) -> int:
        """Samples per step over all workers."""
        return self.local_batch * self.workers

    def cell(self) -> Cell:
        """The stored cell: the strategy as the backend, the global batch, each worker's threads, and the
        worker count and scaling mode as options, so each (strategy, workers, mode) has a key of its own."""
        return Cell(
            model=self.model, backend=self.strategy, device=self.device, precision="fp32",
            batch_size=self.global_batch, threads=self.threads, scenario=SCENARIO,
            options=(("scaling", self.scaling), ("workers", str(self.workers))),
        )


def steps_for_epochs(epochs: int, train_events: int, global_batch: int) -> int:
    """Steps that cover `epochs` passes over `train_events` at `global_batch` samples a step."""
    return epochs * math.ceil(train_events / global_batch)
