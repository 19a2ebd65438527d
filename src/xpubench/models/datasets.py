"""Datasets by name."""

from __future__ import annotations

from functools import cache

from xpubench.data.digits import LabelledSplit, load_digits28
from xpubench.errors import UsageError
from xpubench.models.zoo import DATASETS

_LOADERS = {"digits": load_digits28}


@cache
def load_dataset(name: str) -> LabelledSplit:
    if name not in _LOADERS:
        raise UsageError(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")
    return _LOADERS[name]()
