"""The worker process: `python -m xpubench.run.worker FD PARENT_PID` reads one pickled task on stdin, runs it,
and writes length-prefixed pickled messages to the pipe FD, then exits without tearing runtimes down.

A task is any picklable object with `execute(say)`; what it returns is its answer. A task may return an
`Answer` to go on working once the answer is sent (work that only saves later tasks time). A worker reads
(task, pin, keep) pickles: with `keep` it waits for the next task once it has answered (a warm worker).
Messages: ("affinity", cpus), ("say", text), then one of ("result", value), ("usage", text), ("error", text).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xpubench.errors import UsageError, one_line
from xpubench.hardware.host import allowed_cpus

HEADER = struct.Struct(">Q")  # the length of each pickled message on the pipe
_PR_SET_PDEATHSIG = 1

Say = Callable[[str], None]


@dataclass(frozen=True)
class Answer:
    """A task's answer, and what the worker does after sending it (its failure is no one's)."""

    value: Any
    then: Callable[[Say], None] | None = None


def _die_with_parent(parent: int) -> None:
    """A worker must not go on measuring when its sweep is gone (kill -9 of the parent)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above took effect
        os._exit(1)
    if not sys.platform.startswith("linux"):

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()


class Channel:
    """The worker's end of the pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, kind: str, payload: Any) -> None:
        data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(HEADER.pack(len(data)) + data)
        while view:
            view = view[os.write(self.fd, view) :]

    def say(self, message: str) -> None:
        self.send("say", message)


def main(argv: list[str]) -> None:
    fd, parent = int(argv[0]), int(argv[1])
    _die_with_parent(parent)
    os.set_inheritable(fd, False)  # what the task starts (g++, compile workers) must not hold the pipe open
    channel = Channel(fd)
    try:
        first = True
        while True:
            try:
                task, pin, keep = pickle.load(sys.stdin.buffer)
            except EOFError:  # the launcher let a warm worker go
                break
            if first:
                if pin:
                    os.sched_setaffinity(0, pin)  # before any runtime sizes its thread pools
                channel.send("affinity", allowed_cpus())
                first = False
            _answer(task, channel)
            if not keep:
                break
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        # Skip interpreter teardown: some runtimes crash or hang in their atexit handlers, and the
        # answer is already sent.
        os._exit(0)


def _answer(task: Any, channel: Channel) -> None:
    """Run one task and send its answer (or why there is none); then what it does after answering."""
    try:
        answer = task.execute(channel.say)
        then = answer.then if isinstance(answer, Answer) else None
        channel.send("result", answer.value if isinstance(answer, Answer) else answer)
        if then is not None:
            with contextlib.suppress(Exception):
                then(channel.say)
    except UsageError as exc:
        channel.send("usage", str(exc))
    except MemoryError:
        channel.send("error", "worker ran out of memory (MemoryError)")
    except BaseException as exc:  # whatever it is (SystemExit too), the parent gets it as the reason
        traceback.print_exc()
        channel.send("error", one_line(exc))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


if __name__ == "__main__":
    # Run as `-m`, this file is __main__: its main is taken from the module the tasks import, so that they
    # share one Answer class.
    from xpubench.run.worker import main as worker_main

    worker_main(sys.argv[1:])
