"""Tiny tasks for the launcher's tests: the worker imports this module (the tests put the repo on PYTHONPATH)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Pid:
    """Answers with the worker's pid; tasks with the same `key` may share a warm worker."""

    key: str | None = None

    @property
    def worker_key(self):
        return self.key

    def execute(self, say):
        say(f"pid {os.getpid()}")
        return os.getpid()


@dataclass(frozen=True)
class Sleep:
    seconds: float
    key: str | None = None

    @property
    def worker_key(self):
        return self.key

    def execute(self, say):
        time.sleep(self.seconds)
        return os.getpid()


@dataclass(frozen=True)
class Die:
    key: str | None = None

    @property
    def worker_key(self):
        return self.key

    def execute(self, say):
        os._exit(7)
