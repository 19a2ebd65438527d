"""hls4ml: the bit-accurate C++ emulation of an FPGA design in ap_fixed<W,I>, called one sample at a time."""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from xpubench.backends.base import Backend, TensorSpec
from xpubench.convert.hls4ml import MANIFEST, fixed_point


class Hls4mlBackend(Backend):
    """Loads the shared library the converter compiled and calls its float entry point per sample, as
    hls4ml's own predict does: the emulated design takes one sample per call, so a batch of N is N
    calls. Inputs are cast to ap_fixed inside the library (part of the timed call). Its latency is the
    emulation's on this CPU and says nothing about the FPGA's."""

    name = "hls4ml"
    formats = ("hls4ml",)
    devices = ("fpga-emulated",)
    precisions = ("fixed<16,6>",)
    distribution = "hls4ml"
    module = "hls4ml"
    emulated = True

    @classmethod
    def supports_precision(cls, precision: str) -> bool:
        try:
            fixed_point(precision)
        except ValueError:
            return False
        return True

    @classmethod
    def _precision_unavailable_reason(cls, precision: str) -> str | None:
        try:
            fixed_point(precision)
        except ValueError as exc:  # it says which types there are
            return str(exc)
        return None

    def load(self) -> None:
        manifest_path = self.artifact / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{self.artifact} is no hls4ml project made by xpubench (it has no {MANIFEST})")
        self.manifest = json.loads(manifest_path.read_text())
        self._lib = self._open_library()
        self._in_shapes = [tuple(v["shape"]) for v in self.manifest["inputs"]]
        self._out_shapes = [tuple(v["shape"]) for v in self.manifest["outputs"]]
        self._bind()

    def _open_library(self) -> ctypes.CDLL:
        library = self.artifact / self.manifest["library"]
        weights = (self.artifact / self.manifest["weights_dir"]).resolve()
        if not library.is_file() or not weights.is_dir():
            raise FileNotFoundError(f"the hls4ml project {self.artifact.name} lacks its compiled library or weights")
        lib = ctypes.CDLL(str(library.resolve()))
        # The library reads its weights on its first call from this folder (and exits the process
        # when they are missing, hence the check above); the converter made it a variable.
        path = str(weights).encode()
        size = int(self.manifest["weights_symbol_size"])
        if len(path) >= size:
            raise ValueError(f"the hls4ml project's path is longer than {size - 1} bytes: move it")
        (ctypes.c_char * size).in_dll(lib, self.manifest["weights_symbol"]).value = path
        return lib

    def _bind(self) -> None:
        """The timed call: one C call per sample on pointers into the batch's contiguous arrays."""
        entry = getattr(self._lib, self.manifest["entry"])
        entry.restype = None
        entry.argtypes = [ctypes.c_void_p] * (len(self._in_shapes) + len(self._out_shapes))
        in_bytes = [4 * math.prod(s) for s in self._in_shapes]
        out_bytes = [4 * math.prod(s) for s in self._out_shapes]
        out_shapes = self._out_shapes
        empty = np.empty
        float32 = np.float32
        if len(in_bytes) == 1 and len(out_bytes) == 1:
            (step_in,), (step_out,), (shape_out,) = in_bytes, out_bytes, out_shapes

            def infer(x: np.ndarray) -> np.ndarray:
                n = len(x)
                y = empty((n, *shape_out), float32)
                source, target = x.ctypes.data, y.ctypes.data
                for i in range(n):
                    entry(source + i * step_in, target + i * step_out)
                return y

        else:

            def infer(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
                n = len(xs[0])
                ys = [empty((n, *s), float32) for s in out_shapes]
                sources = [x.ctypes.data for x in xs]
                targets = [y.ctypes.data for y in ys]
                for i in range(n):
                    entry(
                        *[p + i * b for p, b in zip(sources, in_bytes, strict=True)],
                        *[p + i * b for p, b in zip(targets, out_bytes, strict=True)],
                    )
                return ys

        self.infer = infer

    @property
    def inputs(self) -> list[TensorSpec]:
        # Any batch is accepted (it is looped over), so the batch dimension is free here.
        return [
            TensorSpec(v["name"], (None, *v["shape"]), np.dtype(np.float32)) for v in self.manifest["inputs"]
        ]

    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        prepared = []
        for spec, shape, array in zip(self.manifest["inputs"], self._in_shapes, arrays, strict=True):
            # The library reads the sample's values in order: only their count has to match.
            if math.prod(array.shape[1:]) != math.prod(shape):
                raise ValueError(f"hls4ml input {spec['name']} takes samples of shape {shape}, not {array.shape[1:]}")
            prepared.append(np.ascontiguousarray(array, dtype=np.float32))
        return prepared[0] if len(prepared) == 1 and len(self._out_shapes) == 1 else prepared

    def infer(self, prepared: Any) -> Any:  # replaced per instance by _bind()
        raise NotImplementedError

    def fetch(self, result: Any) -> list[np.ndarray]:
        return [result] if isinstance(result, np.ndarray) else list(result)

    def model_bytes(self) -> int:
        """The weights as the FPGA stores them: every parameter in W bits (not the project folder)."""
        width, _ = fixed_point(self.manifest["target_precision"])
        return math.ceil(int(self.manifest["parameters"]) * width / 8)

    def details(self) -> dict[str, Any]:
        keys = ("precision", "io_type", "strategy", "reuse_factor", "parameters", "compile_seconds", "hls4ml_version")
        return {**{k: self.manifest.get(k) for k in keys}, "samples_per_call": 1}
