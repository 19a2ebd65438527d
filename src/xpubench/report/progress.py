"""A progress line on stderr while a sweep runs."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from xpubench.core.cell import Cell


class ProgressBar:
    """Redraws one line on a terminal; prints a line per cell otherwise (logs, CI)."""

    WIDTH = 24

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.total = 0
        self.done = 0

    def cell_started(self, index: int, total: int, cell: Cell) -> None:
        self.total = total
        filled = int(self.WIDTH * index / max(total, 1))
        bar = "#" * filled + "." * (self.WIDTH - filled)
        elapsed = time.monotonic() - self.started
        label = f"{cell.model} {cell.backend} {cell.precision} b{cell.batch_size} t{cell.threads}"
        text = f"[{bar}] {index + 1}/{total} {elapsed:5.0f} s  {label}"
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def cell_done(self, record: dict[str, Any]) -> None:
        self.done += 1
        if self.tty and self.done == self.total:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def say(self, message: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(message + "\n")
        self.stream.flush()
