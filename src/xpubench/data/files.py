"""The user's own data for `--data`: arrays `x` (inputs) and optionally `y` (class labels)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from xpubench.errors import UsageError


def load_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) from a .npz file; y is None when the file has none. Bad files raise UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such data file: {path}")
    if path.suffix.lower() != ".npz":
        raise UsageError(f"{path}: give a .npz file with arrays x (inputs) and y (labels, optional)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UsageError(f"{path} is not a readable .npz file ({exc})") from None
    if "x" not in arrays:
        raise UsageError(f"{path} has no array named x (it has {', '.join(arrays) or 'none'}): save with x=..., y=...")
    x, y = arrays["x"], arrays.get("y")
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    if y is not None:
        if len(y) != len(x):
            raise UsageError(f"{path}: x has {len(x)} samples but y has {len(y)}")
        if not np.issubdtype(y.dtype, np.integer):
            raise UsageError(f"{path}: y must hold integer class labels, got {y.dtype}")
        y = y.astype(np.int64).reshape(-1)
    return x, y
