"""Coral Edge TPU: the compiled uint8 LiteRT model through the libedgetpu delegate."""

from __future__ import annotations

import ctypes.util
import glob
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from xpubench.backends.litert import LiteRTBackend, delegated_share

CORAL_USB_IDS = ("1a6e:089a", "18d1:9302")  # before and after the runtime loads its firmware


class EdgeTPUBackend(LiteRTBackend):
    name = "edgetpu"
    formats = ("edgetpu",)
    devices = ("edgetpu",)
    precisions = ("uint8",)
    option_choices = {}

    @classmethod
    def unavailable_reason(
        cls, device: str | None = None, precision: str | None = None, options: Mapping[str, str] | None = None
    ) -> str | None:
        reason = super().unavailable_reason(device, precision, options)
        if reason:
            return reason
        if ctypes.util.find_library("edgetpu") is None:
            return "libedgetpu is not installed (Coral's runtime is in neither Debian nor PyPI: add Coral's apt source)"
        if not edgetpu_present():
            return "no Edge TPU attached (no /dev/apex_* PCIe device, no Coral USB accelerator)"
        return None

    def _open(self) -> Any:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        delegate = load_delegate(ctypes.util.find_library("edgetpu") or "libedgetpu.so.1")
        return Interpreter(model_path=str(self.artifact), experimental_delegates=[delegate], num_threads=self.threads)

    def delegated_fraction(self) -> float | None:
        return delegated_share(self._interpreter._get_ops_details())

    def details(self) -> dict[str, Any]:
        return {"delegate": "libedgetpu"}


def edgetpu_present() -> bool:
    if glob.glob("/dev/apex_*"):
        return True
    for device in Path("/sys/bus/usb/devices").glob("*"):
        try:
            ids = f"{(device / 'idVendor').read_text().strip()}:{(device / 'idProduct').read_text().strip()}"
        except OSError:
            continue
        if ids in CORAL_USB_IDS:
            return True
    return False
