"""The frozen tasks a launcher runs for training: one training cell (it starts torchrun or the TF worker group
inside its worker, so any launcher, a Dask one too, can place it), the communication probe and the concurrent
compute probe."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xpubench.train.spec import TrainSpec

if TYPE_CHECKING:
    from xpubench.core.cell import CellResult


def unavailable(spec: TrainSpec) -> str | None:
    """Why this cell cannot run here (one line), or None. Answered without starting a worker."""
    from xpubench.train.feed import model_facts

    facts = model_facts(spec.model)
    if spec.strategy == "tf-tpu":
        if not (os.environ.get("TPU_NAME") or any(os.path.exists(f"/dev/accel{i}") for i in range(8))):
            return "no Cloud TPU here (no TPU_NAME, no /dev/accel*): TPUStrategy needs a TPU VM or a TPU node"
        return "TPUStrategy is not driven by xpubench yet: run tf-multiworker on the TPU VM's host instead"
    if spec.strategy == "torch-ddp" and facts.task != "generate":
        return f"torch-ddp trains the calo-gan only (it has a torch definition); {spec.model} trains with tf-*"
    if spec.device != "cpu" and spec.strategy != "torch-ddp":
        return f"{spec.strategy} runs on CPU workers here; only torch-ddp takes --device {spec.device}"
    return None


@dataclass(frozen=True)
class TrainCellTask:
    """Train one cell and return its CellResult (`failed`, with the reason, when the worker group broke)."""

    spec: TrainSpec
    timeout_s: float

    def execute(self, say: Any) -> CellResult:
        from xpubench.core.cell import CellResult
        from xpubench.hardware.host import load_average
        from xpubench.train.breakdown import cell_result
        from xpubench.train.feed import load_split, model_facts
        from xpubench.train.groups import TrainingFailed, run_group
        from xpubench.train.spec import steps_for_epochs

        spec = self.spec
        facts = model_facts(spec.model)
        load_split(facts)  # generated and cached once here, not by every worker at the same time
        load_before = load_average()
        try:
            reports = run_group(spec, self.timeout_s, say)
        except TrainingFailed as exc:
            return CellResult.not_measured(spec.cell(), "failed", str(exc))
        steps_per_epoch = steps_for_epochs(1, facts.train_events, spec.global_batch)
        details = {"engine_version": reports[0].get("engine_version")}
        return cell_result(spec, reports, steps_per_epoch, details, load_before)


@dataclass(frozen=True)
class ProbeTask:
    """Time the step's all-reduce (its `bucket_bytes`, one after the other) and a 4-byte one with gloo between 2
    processes on loopback, `repeats` times each (their medians), and the buckets again each after `gaps_s` of
    compute (their mean)."""

    bucket_bytes: tuple[int, ...]
    repeats: int = 200
    gaps_s: tuple[float, ...] = ()

    def execute(self, say: Any) -> dict[str, Any]:
        from xpubench.train.probe import probe

        return probe(self.bucket_bytes, self.repeats, gaps_s=self.gaps_s)


@dataclass(frozen=True)
class ContentionTask:
    """The concurrent compute probe: `spec`'s 1-worker training alone, then `copies` copies of it at once."""

    spec: TrainSpec
    copies: int
    timeout_s: float

    def execute(self, say: Any) -> dict[str, Any]:
        from xpubench.train.contention import concurrent_busy

        return concurrent_busy(self.spec, self.copies, self.timeout_s, say)
