"""Tasks for tests/test_cluster.py, importable by the cell processes of a cluster's workers."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class KillsItsWorker:
    """Kills the Dask worker process that started it (its parent), as a crash of the machine would."""

    def execute(self, say) -> None:
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(60)
