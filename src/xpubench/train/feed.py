"""Each worker's input pipeline: its shard of the zoo model's training data, a batch per step drawn by a
seeded generator, and (on purpose, to starve it) a sleep. Framework-free, so both engines eat the same."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpubench.errors import UsageError
from xpubench.train.spec import TrainSpec


@dataclass(frozen=True)
class ModelFacts:
    """What the engines need to know of a zoo model: its task, build keywords and learning rate."""

    name: str
    task: str  # generate (the calo GAN), classify, regress
    size: Any  # zoo.Size
    learning_rate: float
    train_events: int

    @property
    def keywords(self) -> dict[str, Any]:
        return dict(self.size.model)


def model_facts(name: str) -> ModelFacts:
    from xpubench.models.zoo import lookup

    found = lookup(name)
    if found is None:
        raise UsageError(f"{name!r} is not a zoo model: `xpubench zoo` lists them (train takes zoo models)")
    entry, size_name = found
    if entry.task == "none":
        raise UsageError(f"{name} is an untrained scan with no data or loss: train a model that learns")
    size = entry.sizes[size_name]
    return ModelFacts(name, entry.task, size, entry.learning_rate, size.train)


def load_split(facts: ModelFacts) -> Any:
    """The model's data (LabelledSplit): the calo showers with their energies, or the classifier's split."""
    from xpubench.models.datasets import load_dataset, split_for
    from xpubench.models.zoo import lookup

    if facts.task == "generate":
        return load_dataset("calo", facts.size.train, facts.size.test, **dict(facts.size.data))
    entry, _ = lookup(facts.name)  # type: ignore[misc]
    return split_for(entry, facts.size)


class Feed:
    """Worker `rank` of `world`'s batches: its own shard (every world-th event), reshuffled each pass."""

    def __init__(self, spec: TrainSpec, facts: ModelFacts, split: Any, rank: int, world: int) -> None:
        self.spec, self.facts = spec, facts
        self.x = np.asarray(split.x_train[rank::world], dtype=np.float32)
        self.y = np.asarray(split.y_train[rank::world])
        if len(self.y) < spec.local_batch:
            raise UsageError(f"{facts.name} has {len(self.y)} training events per worker, fewer than the batch "
                             f"{spec.local_batch}: lower --batch")
        self.rng = np.random.default_rng([spec.seed, rank])
        self.order = np.empty(0, dtype=np.int64)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) for a classifier; (showers, z) for the GAN, z = (noise, E / 100 GeV)."""
        if self.spec.input_delay_s:
            time.sleep(self.spec.input_delay_s)
        b = self.spec.local_batch
        if self.order.size < b:
            self.order = np.concatenate([self.order, self.rng.permutation(len(self.y))])
        index, self.order = self.order[:b], self.order[b:]
        if self.facts.task != "generate":
            return self.x[index], self.y[index]
        from xpubench.models.datasets import generator_inputs

        latent = self.facts.keywords["latent"]
        return self.x[index], generator_inputs(self.y[index], latent, int(self.rng.integers(1 << 31)))


def sampling_fraction(split: Any) -> float:
    """The real showers' mean visible energy over primary energy (the GAN's energy-sum constraint)."""
    x = np.asarray(split.x_train, dtype=np.float64)
    return float(np.mean(x.reshape(len(x), -1).sum(axis=1) / np.asarray(split.y_train, dtype=np.float64)))
