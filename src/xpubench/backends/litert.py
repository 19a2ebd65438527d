"""LiteRT (TensorFlow Lite) through the `ai_edge_litert` interpreter, XNNPACK on by default."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpubench.backends.base import Backend, TensorSpec


class LiteRTBackend(Backend):
    name = "litert"
    formats = ("tflite",)
    distribution = "ai-edge-litert"
    module = "ai_edge_litert"

    def __init__(self, artifact: Path, device: str = "cpu", threads: int = 1) -> None:
        super().__init__(artifact, device, threads)
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(self.artifact), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._in = self._interpreter.get_input_details()
        self._out = self._interpreter.get_output_details()
        self._bind()

    def _bind(self) -> None:
        """Build the timed call from the interpreter's own methods, specialised to the I/O count."""
        set_tensor = self._interpreter.set_tensor
        invoke = self._interpreter.invoke
        get_tensor = self._interpreter.get_tensor
        in_idx = [d["index"] for d in self._in]
        out_idx = [d["index"] for d in self._out]
        if len(in_idx) == 1 and len(out_idx) == 1:
            (i0,), (o0,) = in_idx, out_idx

            def infer(x: np.ndarray) -> np.ndarray:
                set_tensor(i0, x)
                invoke()
                return get_tensor(o0)

        else:

            def infer(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
                for i, x in zip(in_idx, xs, strict=True):
                    set_tensor(i, x)
                invoke()
                return [get_tensor(o) for o in out_idx]

        self.infer = infer

    @property
    def inputs(self) -> list[TensorSpec]:
        return [
            TensorSpec(
                d["name"],
                tuple(int(s) if s > 0 else None for s in d.get("shape_signature", d["shape"])),
                np.dtype(d["dtype"]),
            )
            for d in self._in
        ]

    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        resized = False
        for detail, array in zip(self._in, arrays, strict=True):
            if tuple(detail["shape"]) != array.shape:
                self._interpreter.resize_tensor_input(detail["index"], list(array.shape), strict=True)
                resized = True
        if resized:
            self._interpreter.allocate_tensors()
            self._in = self._interpreter.get_input_details()
            self._out = self._interpreter.get_output_details()
            self._bind()
        arrays = [np.ascontiguousarray(a, dtype=d["dtype"]) for d, a in zip(self._in, arrays, strict=True)]
        return arrays[0] if len(arrays) == 1 and len(self._out) == 1 else arrays

    def infer(self, prepared: Any) -> Any:  # replaced per instance by _bind()
        raise NotImplementedError

    def fetch(self, result: Any) -> list[np.ndarray]:
        return [np.array(result)] if isinstance(result, np.ndarray) else [np.array(r) for r in result]
