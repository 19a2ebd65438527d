"""The zoo: the source studies' networks as Keras 3 definitions, each with its dataset and metric."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ZooEntry:
    name: str
    summary: str
    dataset: str
    metric: str
    build: Callable[[], Any]  # returns an uncompiled keras.Model
    epochs: int
    batch_size: int = 32
    learning_rate: float = 1e-3


def build_dense1() -> Any:
    """One fully connected layer, 784 -> 10: 7,850 parameters (the edge study's Dense1)."""
    import keras

    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax", name="dense"),
        ],
        name="dense1",
    )


def build_conv3dense1() -> Any:
    """Three convolutions and one dense layer on 28x28x1: 118,690 parameters (the study's Conv3Dense1)."""
    import keras

    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            keras.layers.Conv2D(32, 3, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu", name="conv2"),
            keras.layers.Conv2D(72, 3, activation="relu", name="conv3"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax", name="dense"),
        ],
        name="conv3dense1",
    )


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry("dense1", "1 dense layer, 784->10, 7,850 params", "digits", "top1", build_dense1, epochs=40),
        ZooEntry(
            "conv3dense1", "3 conv + 1 dense, 118,690 params", "digits", "top1", build_conv3dense1, epochs=12
        ),
    )
}

DATASETS: dict[str, str] = {
    "digits": "scikit-learn's 1,797 real handwritten digits, upsampled to 28x28x1; 80/20 stratified split",
}
