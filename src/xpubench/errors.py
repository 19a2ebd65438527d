"""The one error type the CLI turns into a one-line message and exit code 2, and the one-line form of
a runtime's failure that a cell's record keeps."""

from __future__ import annotations

import re

REASON_CHARS = 300  # a failure reason stays readable in a table cell

# Lines that say where, not what: C++ source locations ("Exception from src/inference/src/cpp/core.cpp:84:"),
# Python traceback frames and their headers, and separators. The runtime's own sentence is what is left.
_LOCATION = re.compile(r"^(exception from |at |in )?\S+\.(c|cc|cpp|cxx|h|hpp|py|pyx)(:\d+)+:?$", re.IGNORECASE)
_FRAME = re.compile(r'^File ".*", line \d+')
_HEADER = re.compile(r"^(Traceback \(most recent call last\):|.*\bdefined at \(most recent call last\):)$")
_SEPARATOR = re.compile(r"^[-=_*~#^+.|<>\s]+$")


class UsageError(Exception):
    """Bad input from the user: the message says what is wrong and what to do."""


def one_line(exc: BaseException) -> str:
    """`Type: message` in one line: the lines that explain the failure, without source locations,
    traceback frames, blanks or separators, joined and cut to REASON_CHARS characters."""
    raw = str(exc).splitlines()
    kept: list[str] = []
    frame_indent: int | None = None  # a frame's next, deeper-indented line is its source code
    for line in raw:
        text = line.strip()
        indent = len(line) - len(line.lstrip())
        if frame_indent is not None and indent > frame_indent and text:
            frame_indent = None
            continue
        frame_indent = None
        if _FRAME.match(text):
            frame_indent = indent
            continue
        if not text or _LOCATION.match(text) or _HEADER.match(text) or _SEPARATOR.match(text):
            continue
        kept.append(text)
    if not kept:  # nothing but locations: the first line is better than nothing
        kept = [line.strip() for line in raw if line.strip()][:1]
    message = " ".join(kept)
    found = f"{type(exc).__name__}: {message}".strip().rstrip(":")
    return found if len(found) <= REASON_CHARS else found[: REASON_CHARS - 1].rstrip() + "…"
