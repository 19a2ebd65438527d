"""scikit-learn's bundled handwritten digits (real data), upsampled to MNIST's 28x28 with a fixed split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPLIT_SEED = 20190417
HELD_OUT_FRACTION = 0.2
SIDE = 28


@dataclass(frozen=True)
class LabelledSplit:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]


def load_digits28() -> LabelledSplit:
    """1,797 8x8 digits -> (N, 28, 28, 1) float32 in [0, 1]; 80 % train, 20 % held out, stratified."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float32) / 16.0
    upsampled = zoom(images, (1, SIDE / 8, SIDE / 8), order=1).clip(0.0, 1.0).astype(np.float32)
    x = upsampled[..., np.newaxis]
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=HELD_OUT_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    return LabelledSplit(x_train, y_train, x_test, y_test, tuple(str(i) for i in range(10)))
