"""Datasets by name: the real digits, and the physics generators' events cached on disk."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
from functools import cache
from pathlib import Path

import numpy as np

from xpubench.data.digits import LabelledSplit, load_digits28
from xpubench.errors import UsageError
from xpubench.models.zoo import DATASETS, Size, ZooEntry
from xpubench.paths import cache_dir

TRAIN_SEED, TEST_SEED = 0, 1  # independent draws for the two splits
LATENT_SEED = 7  # the calo-gan's evaluation noise
MMAP_BYTES = 1 << 30
ENERGY_UNIT = 100.0  # GeV: the calo-gan's energy input is E / ENERGY_UNIT


def load_dataset(name: str, train: int = 0, test: int = 0, **size: object) -> LabelledSplit:
    """A dataset's train and held-out split; generated ones have `train` and `test` events."""
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")
    if name == "digits":
        return _digits(int(size.get("side", 28)), int(size.get("channels", 1)))  # type: ignore[arg-type]
    frozen = tuple(sorted(size.items()))
    return _generated(name, train, test, frozen)


def split_for(entry: ZooEntry, size: Size) -> LabelledSplit:
    """The data a zoo model eats at `size`: for calo-gan, the generator's inputs z = (noise, E / 100 GeV)
    with the energy as the target (its showers train only the discriminator)."""
    assert entry.dataset is not None
    split = load_dataset(entry.dataset, size.train, size.test, **dict(size.data))
    if entry.task != "generate":
        return split
    latent = dict(size.model)["latent"]
    return LabelledSplit(
        generator_inputs(split.y_train, latent, LATENT_SEED),
        split.y_train,
        generator_inputs(split.y_test, latent, LATENT_SEED + 1),
        split.y_test,
        (),
    )


def generator_inputs(energies: np.ndarray, latent: int, seed: int) -> np.ndarray:
    """z for the calo-gan: standard normal noise, then the energy in units of 100 GeV."""
    noise = np.random.default_rng(seed).standard_normal((len(energies), latent)).astype(np.float32)
    return np.concatenate([noise, (energies / ENERGY_UNIT).astype(np.float32)[:, None]], axis=1)


def source_digest(name: str) -> str:
    """A hash of the generator's source: new physics means new data (and retrained models)."""
    if name == "digits":
        from xpubench.data import digits

        return hashlib.sha256(inspect.getsource(digits).encode()).hexdigest()[:16]
    from xpubench.data import GENERATORS

    module = importlib.import_module(GENERATORS[name].module)
    return hashlib.sha256(inspect.getsource(module).encode()).hexdigest()[:16]


@cache
def _digits(side: int, channels: int) -> LabelledSplit:
    """The digits at 28x28x1, or zero-padded to a larger side and repeated over channels (32x32x3 is
    CIFAR-10's shape, which the edge study's MobileNet took)."""
    split = load_digits28()
    if side == 28 and channels == 1:
        return split
    if side < 28:
        raise UsageError(f"digits come at side 28 or larger, not {side}")
    low = (side - 28) // 2
    pad = ((0, 0), (low, side - 28 - low), (low, side - 28 - low), (0, 0))

    def reshape(x: np.ndarray) -> np.ndarray:
        return np.repeat(np.pad(x, pad), channels, axis=-1)

    return LabelledSplit(reshape(split.x_train), split.y_train, reshape(split.x_test), split.y_test, split.classes)


@cache
def _generated(name: str, train: int, test: int, size: tuple[tuple[str, object], ...]) -> LabelledSplit:
    from xpubench.data import GENERATORS

    if name not in GENERATORS:
        raise UsageError(f"no generator for dataset {name!r}: choose from {', '.join(GENERATORS)}")
    x_train, y_train = _cached_events(name, train, TRAIN_SEED, size)
    x_test, y_test = _cached_events(name, test, TEST_SEED, size)
    return LabelledSplit(x_train, y_train, x_test, y_test, GENERATORS[name].classes or ())


def _cached_events(name: str, events: int, seed: int, size: tuple) -> tuple[np.ndarray, np.ndarray]:
    """generate(name, events, seed, **size), kept as .npy files so training and runs do not regenerate;
    a large x is memory-mapped (10k LArTPC events at full size are 4.8 GB)."""
    key = hashlib.sha256(repr((name, events, seed, size, source_digest(name))).encode()).hexdigest()[:16]
    folder = cache_dir() / "data" / f"{name}-{events}-s{seed}-{key}"
    if not (folder / "y.npy").exists():
        from xpubench.data import generate

        x, y = generate(name, events, seed=seed, **dict(size))
        folder.mkdir(parents=True, exist_ok=True)
        _save(folder / "x.npy", np.ascontiguousarray(x, dtype=np.float32))
        _save(folder / "y.npy", np.asarray(y))  # written last: marks the folder complete
    big = (folder / "x.npy").stat().st_size > MMAP_BYTES
    return np.load(folder / "x.npy", mmap_mode="r" if big else None), np.load(folder / "y.npy")


def _save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, array)
    tmp.replace(path)
