"""Where xpubench keeps things on disk: the user's cache (trained models, artifacts) and results."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_RESULTS = Path("xpubench-results")


def cache_dir() -> Path:
    """$XPUBENCH_CACHE, else $XDG_CACHE_HOME/xpubench, else ~/.cache/xpubench."""
    if explicit := os.environ.get("XPUBENCH_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "xpubench"
