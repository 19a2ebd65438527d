"""Runtime adapters, found by name through the `xpubench.backends` entry points."""

from __future__ import annotations

import importlib.metadata
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xpubench.backends.base import Backend

GROUP = "xpubench.backends"
HIDDEN = frozenset({"null"})  # test-only backends: never part of `--backend all`


@cache
def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}


def backend_names(include_hidden: bool = False) -> list[str]:
    return sorted(n for n in _entry_points() if include_hidden or n not in HIDDEN)


def get_backend(name: str) -> type[Backend]:
    """The backend class registered under `name` (imports only that module)."""
    try:
        entry = _entry_points()[name]
    except KeyError:
        raise KeyError(
            f"unknown backend {name!r}: choose from {', '.join(backend_names())}"
        ) from None
    return entry.load()
