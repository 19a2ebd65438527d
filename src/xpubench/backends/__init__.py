"""Runtime adapters, found by name through the `xpubench.backends` entry points."""

from __future__ import annotations

import importlib.metadata
import os
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xpubench.backends.base import Backend

GROUP = "xpubench.backends"
HIDDEN = frozenset({"null"})  # test-only backends: never part of `--backend all`
# Test hook: `NAME=module:Class,...` registers more backends, hidden like `null`, in this process and
# in the sweep's worker processes (they inherit the environment). Tests use it for backends that crash.
EXTRA_ENV = "XPUBENCH_EXTRA_BACKENDS"


@cache
def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found = {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}
    found.update({ep.name: ep for ep in _extra_entry_points()})
    return found


def _extra_entry_points() -> list[importlib.metadata.EntryPoint]:
    entries = []
    for item in filter(None, (part.strip() for part in os.environ.get(EXTRA_ENV, "").split(","))):
        name, eq, target = item.partition("=")
        if not eq or ":" not in target:
            raise ValueError(f"{EXTRA_ENV}: {item!r} is not NAME=module:Class")
        entries.append(importlib.metadata.EntryPoint(name.strip(), target.strip(), GROUP))
    return entries


def backend_names(include_hidden: bool = False) -> list[str]:
    hidden = HIDDEN | {ep.name for ep in _extra_entry_points()}
    return sorted(n for n in _entry_points() if include_hidden or n not in hidden)


def get_backend(name: str) -> type[Backend]:
    """The backend class registered under `name` (imports only that module)."""
    try:
        entry = _entry_points()[name]
    except KeyError:
        raise KeyError(
            f"unknown backend {name!r}: choose from {', '.join(backend_names())}"
        ) from None
    return entry.load()
