"""The translator's error, and the one-line form of what torch raises."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class UnsupportedOnnx(ValueError):
    """The ONNX graph uses something the translator does not cover; the message names it."""


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


@contextlib.contextmanager
def export_errors(what: str) -> Iterator[None]:
    """torch.export's failures (long, multi-line) as one RuntimeError line; UnsupportedOnnx passes as it is."""
    try:
        yield
    except UnsupportedOnnx:
        raise
    except Exception as exc:
        raise RuntimeError(f"torch.export of {what} failed: {first_line(exc)}") from exc
