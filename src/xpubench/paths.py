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


def content_digest(path: Path) -> str:
    """sha256 of a file's bytes, or of every file in a folder (a SavedModel) with its relative name."""
    import hashlib

    h = hashlib.sha256()
    for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if file.is_file():
            h.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
            with file.open("rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()
