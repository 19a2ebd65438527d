"""TensorFlow Lite for Microcontrollers on the host: the MCU's kernels and arena, emulated, one sample per invoke."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from xpubench.backends.base import Backend, TensorSpec

# The first arena tried is this many times the model's size (TFLM's own guess), at least ARENA_MIN;
# on failure it doubles up to ARENA_MAX, far beyond any microcontroller's RAM. (Below ~0.5 KiB TFLM
# crashes instead of failing, so the minimum stays far above that.)
ARENA_FACTOR = 10
ARENA_MIN = 64 * 1024
ARENA_MAX = 1 << 30
_ARENA_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


class TFLMBackend(Backend):
    """A microcontroller takes one sample at a time: the model has batch 1, and a batch of N is N
    invokes one after another inside `infer` (as firmware would loop). Threads are ignored: an MCU
    has one core."""

    name = "tflm"
    formats = ("tflite",)
    devices = ("mcu-emulated",)
    precisions = ("fp32", "int8")
    distribution = "tflite-micro"
    module = "tflite_micro"
    emulated = True

    def load(self) -> None:
        from xpubench.backends.tflite_layout import read_layout

        self._layout = read_layout(self.artifact)  # a model converted from ONNX: its order and layout (NHWC)
        self._flatbuffer = self.artifact.read_bytes()
        self._in_tensors, self._out_tensors, names = _io_tensors(self._flatbuffer)
        self._interpreter, self.arena_size = _open(self._flatbuffer)
        self._in = [self._interpreter.get_input_details(i) for i in range(len(self._in_tensors))]
        self._out = [self._interpreter.get_output_details(i) for i in range(len(self._out_tensors))]
        self._names = names
        batches = {int(d["shape"][0]) for d in self._in if len(d["shape"])}
        if batches - {1}:
            raise ValueError(f"tflm runs models of batch 1 (one sample per invoke); {self.artifact.name} has {batches}")
        self.arena_bytes = self._measure_arena()
        self._bind()

    def _measure_arena(self) -> int | None:
        """Run once, then read what the recording allocator says it used (it prints to C stderr)."""
        for i, detail in enumerate(self._in):
            self._interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), i)
        self._interpreter.invoke()
        with _native_output_captured() as captured:
            self._interpreter.print_allocations()
        found = _ARENA_TOTAL.search(captured[0]) if captured else None
        return int(found.group(1)) if found else None

    def _bind(self) -> None:
        """The timed call: quantise the whole batch once, invoke per sample, dequantise once."""
        set_input = self._interpreter.set_input
        invoke = self._interpreter.invoke
        get_output = self._interpreter.get_output
        concatenate = np.concatenate
        quantise = [_quantiser(d) for d in self._in]
        dequantise = [_dequantiser(d) for d in self._out]
        if len(self._in) == 1 and len(self._out) == 1:
            q0, d0 = quantise[0], dequantise[0]

            def infer(x: np.ndarray) -> np.ndarray:
                if q0 is not None:
                    x = q0(x)
                outputs = []
                append = outputs.append
                for i in range(len(x)):
                    set_input(x[i : i + 1], 0)
                    invoke()
                    append(get_output(0))
                y = concatenate(outputs)
                return y if d0 is None else d0(y)

        else:
            n_out = len(self._out)

            def infer(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
                xs = [x if q is None else q(x) for q, x in zip(quantise, xs, strict=True)]
                outputs: list[list[np.ndarray]] = [[] for _ in range(n_out)]
                for i in range(len(xs[0])):
                    for j, x in enumerate(xs):
                        set_input(x[i : i + 1], j)
                    invoke()
                    for k in range(n_out):
                        outputs[k].append(get_output(k))
                ys = [concatenate(o) for o in outputs]
                return [y if d is None else d(y) for d, y in zip(dequantise, ys, strict=True)]

        self.infer = infer

    @property
    def inputs(self) -> list[TensorSpec]:
        # Any batch is accepted (it is looped over), so the batch dimension is free here.
        specs = [
            TensorSpec(name, (None, *(int(s) for s in d["shape"][1:])), np.dtype(np.float32))
            for name, d in zip(self._names, self._in, strict=True)
        ]
        return self._layout.source_specs(specs) if self._layout else specs

    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        arrays = self._layout.to_model(arrays) if self._layout else arrays
        prepared = []
        for name, detail, array in zip(self._names, self._in, arrays, strict=True):
            expected = tuple(int(s) for s in detail["shape"][1:])
            if tuple(array.shape[1:]) != expected:
                raise ValueError(f"tflm input {name} takes samples of shape {expected}, not {tuple(array.shape[1:])}")
            # A float model takes floats as they are; an integer one gets them quantised in `infer`.
            dtype = np.float32 if _quantiser(detail) else np.dtype(detail["dtype"])
            prepared.append(np.ascontiguousarray(array, dtype=dtype))
        return prepared[0] if len(prepared) == 1 and len(self._out) == 1 else prepared

    def infer(self, prepared: Any) -> Any:  # replaced per instance by _bind()
        raise NotImplementedError

    def fetch(self, result: Any) -> list[np.ndarray]:
        outputs = [np.asarray(o, dtype=np.float32) for o in ([result] if isinstance(result, np.ndarray) else result)]
        return self._layout.from_model(outputs) if self._layout else outputs

    def details(self) -> dict[str, Any]:
        return {
            "arena_bytes": self.arena_bytes,
            "arena_size": self.arena_size,
            "flash_bytes": len(self._flatbuffer),
            "samples_per_invoke": 1,
            "io_types": [np.dtype(d["dtype"]).name for d in self._in],
        }

    def model_bytes(self) -> int:
        return len(self._flatbuffer)

    def close(self) -> None:
        self._interpreter = None


def _open(flatbuffer: bytes) -> tuple[Any, int]:
    """An interpreter with an arena big enough: TFLM allocates everything up front and fails when
    the arena is short, so try a generous size and double it until allocation succeeds."""
    from tflite_micro import runtime

    size = max(ARENA_MIN, ARENA_FACTOR * len(flatbuffer))
    last = ""
    while size <= ARENA_MAX:
        with _native_output_captured() as captured:  # each failed try prints its shortfall
            try:
                return runtime.Interpreter.from_bytes(flatbuffer, arena_size=size), size
            except RuntimeError as exc:
                last = str(exc)
        last = next((line for line in captured[0].splitlines() if line.strip()), last)
        size *= 2
    raise RuntimeError(f"tflm could not allocate the model in a {ARENA_MAX >> 20} MiB arena: {last}")


def _io_tensors(flatbuffer: bytes) -> tuple[list[int], list[int], list[str]]:
    """The main subgraph's input and output tensor indices, and the inputs' names (the Python API
    gives neither a count nor names)."""
    from tflite_micro import runtime

    model = runtime.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    inputs, outputs = [int(i) for i in graph.inputs], [int(i) for i in graph.outputs]
    names = [_text(graph.tensors[i].name) or f"input_{n}" for n, i in enumerate(inputs)]
    return inputs, outputs, names


def _text(name: bytes | str | None) -> str:
    return name.decode() if isinstance(name, bytes) else (name or "")


@contextlib.contextmanager
def _native_output_captured() -> Iterator[list[str]]:
    """Collect what C code writes on stdout and stderr meanwhile; the list holds it once the block ends."""
    captured: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield captured
        finally:
            libc.fflush(None)  # C stdio may buffer: push it into the file before reading
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            captured.append(sink.read().decode(errors="replace"))


def _scale_zero(detail: Mapping[str, Any]) -> tuple[float, int] | None:
    """The tensor's single (per-tensor) scale and zero point; None for a float tensor."""
    params = detail.get("quantization_parameters") or {}
    scales, zeros = params.get("scales", ()), params.get("zero_points", ())
    if not np.issubdtype(np.dtype(detail["dtype"]), np.integer) or len(scales) != 1:
        return None
    return float(scales[0]), int(zeros[0])


def _quantiser(detail: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray] | None:
    found = _scale_zero(detail)
    if found is None:
        return None
    scale, zero = found
    dtype = np.dtype(detail["dtype"])
    info = np.iinfo(dtype)
    inverse = np.float32(1.0 / scale)

    def quantise(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x * inverse) + zero, info.min, info.max).astype(dtype)

    return quantise


def _dequantiser(detail: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray] | None:
    found = _scale_zero(detail)
    if found is None:
        return None
    scale, zero = np.float32(found[0]), np.float32(found[1])

    def dequantise(y: np.ndarray) -> np.ndarray:
        return (y.astype(np.float32) - zero) * scale

    return dequantise
