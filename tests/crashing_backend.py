"""Test-only backends that kill or hang their own process mid-measurement (ONNX Runtime until `infer`).

Registered for tests only, through the XPUBENCH_EXTRA_BACKENDS hook (see xpubench.backends), as
`segfault=tests.crashing_backend:SegfaultBackend,...`; the sweep's worker processes inherit it.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

from xpubench.backends.onnxruntime import OnnxRuntimeBackend


class _Crashing(OnnxRuntimeBackend):
    """Loads the model in ONNX Runtime as usual; its first timed call does what `crash` does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.infer = self.crash  # ONNX Runtime binds session.run per instance: replace that

    def crash(self, prepared: Any) -> Any:
        raise NotImplementedError


class SegfaultBackend(_Crashing):
    """Reads address 0: SIGSEGV, as a runtime's bad pointer would."""

    name = "segfault"

    def crash(self, prepared: Any) -> Any:
        return ctypes.string_at(0)


class AbortBackend(_Crashing):
    """abort(): SIGABRT, as a failed assertion in a runtime's C++ would."""

    name = "abort"

    def crash(self, prepared: Any) -> Any:
        os.abort()


class ExitBackend(_Crashing):
    """Exits the process with code 3, as a runtime calling exit() would."""

    name = "exit"

    def crash(self, prepared: Any) -> Any:
        os._exit(3)


class HangBackend(_Crashing):
    """Never returns, as a deadlocked runtime would."""

    name = "hang"

    def crash(self, prepared: Any) -> Any:
        time.sleep(3600)


REGISTRATION = ",".join(
    f"{cls.name}=tests.crashing_backend:{cls.__name__}"
    for cls in (SegfaultBackend, AbortBackend, ExitBackend, HangBackend)
)
