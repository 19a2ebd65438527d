"""A progress line on stderr while a sweep runs."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from xpubench.core.cell import Cell


class ProgressBar:
    """Redraws one line on a terminal; prints a line per cell otherwise (logs, CI). When cells run several at
    once (a cluster), the line says how many are done and queued, and which run on which worker."""

    WIDTH = 24
    SHOWN = 4  # running cells named on the line; the rest are counted

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.total = 0
        self.done = 0
        self.concurrent = False  # cells_running draws the line from then on

    def cell_started(self, index: int, total: int, cell: Cell) -> None:
        self.total = total
        if self.concurrent:
            return
        elapsed = time.monotonic() - self.started
        self._draw(f"[{self._bar(index, total)}] {index + 1}/{total} {elapsed:5.0f} s  {_label(cell)}")

    def cells_running(self, queued: int, running: list[tuple[Cell, str | None]], done: int, total: int) -> None:
        """Cells measured several at once: `running` holds the submitted ones with their worker (None: still
        waiting for one)."""
        self.concurrent = True
        self.total = total
        started = [(cell, where) for cell, where in running if where is not None]
        waiting = queued + len(running) - len(started)
        names = ", ".join(f"{_label(cell)} on {where}" for cell, where in started[: self.SHOWN])
        if len(started) > self.SHOWN:
            names += f", +{len(started) - self.SHOWN}"
        elapsed = time.monotonic() - self.started
        self._draw(f"[{self._bar(done, total)}] {done}/{total} done, {waiting} queued, {len(started)} running"
                   f"{': ' + names if names else ''}  {elapsed:5.0f} s")

    def _bar(self, done: int, total: int) -> str:
        filled = int(self.WIDTH * done / max(total, 1))
        return "#" * filled + "." * (self.WIDTH - filled)

    def _draw(self, text: str) -> None:
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


def _label(cell: Cell) -> str:
    return f"{cell.model} {cell.backend} {cell.precision} b{cell.batch_size} t{cell.threads}"
