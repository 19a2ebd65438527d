"""The results store: every cell of every run, with the environment it ran in."""

from xpubench.store.db import SCHEMA_VERSION, ResultStore

__all__ = ["SCHEMA_VERSION", "ResultStore"]
