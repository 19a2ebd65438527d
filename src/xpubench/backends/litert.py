"""LiteRT (TensorFlow Lite) through the `ai_edge_litert` interpreter, XNNPACK on by default."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from xpubench.backends.base import Backend, TensorSpec


class LiteRTBackend(Backend):
    name = "litert"
    times_compute = True
    formats = ("tflite",)
    precisions = ("fp32", "int8-dynamic", "fp16", "int8", "uint8")
    option_choices = {"xnnpack": ("on", "off")}
    distribution = "ai-edge-litert"
    module = "ai_edge_litert"

    def load(self) -> None:
        from xpubench.backends.tflite_layout import read_layout

        # A model converted from ONNX may take its inputs in another order and layout (NHWC): the caller's arrays
        # stay in the source's, turned around in `prepare` (not timed) and back in `fetch`.
        self._layout = read_layout(self.artifact)
        self._interpreter = self._open()
        self._interpreter.allocate_tensors()
        self._in = self._interpreter.get_input_details()
        self._out = self._interpreter.get_output_details()
        self._bind()

    def _open(self) -> Any:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        extra = {}
        if self.options["xnnpack"] == "off":
            extra["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        return Interpreter(model_path=str(self.artifact), num_threads=self.threads, **extra)

    def _bind(self) -> None:
        """Build the timed call from the interpreter's own methods, specialised to the I/O count.

        A full-integer model takes and gives integers: quantising the float inputs and
        dequantising the outputs happen inside the timed call, as they would in an application.
        """
        set_tensor = self._interpreter.set_tensor
        invoke = self._interpreter.invoke
        get_tensor = self._interpreter.get_tensor
        quantise = [_quantiser(d) for d in self._in]
        in_idx = [d["index"] for d in self._in]
        out_idx = [d["index"] for d in self._out]
        if len(in_idx) == 1 and len(out_idx) == 1 and quantise[0] is None:
            (i0,), (o0,) = in_idx, out_idx

            def infer(x: np.ndarray) -> np.ndarray:
                set_tensor(i0, x)
                invoke()
                return get_tensor(o0)

        else:

            def infer(xs: Sequence[np.ndarray]) -> list[np.ndarray]:
                for i, q, x in zip(in_idx, quantise, xs, strict=True):
                    set_tensor(i, x if q is None else q(x))
                invoke()
                return [get_tensor(o) for o in out_idx]

        self.infer = infer

    @property
    def inputs(self) -> list[TensorSpec]:
        specs = [
            TensorSpec(
                d["name"],
                tuple(int(s) if s > 0 else None for s in d.get("shape_signature", d["shape"])),
                # What the caller hands over: floats, even where the model quantises them itself.
                np.dtype(np.float32) if _quantiser(d) else np.dtype(d["dtype"]),
            )
            for d in self._in
        ]
        return self._layout.source_specs(specs) if self._layout else specs

    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        return self._prepare(self._layout.to_model(arrays) if self._layout else arrays)

    def _prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        """Arrays in the model's own order and layout -> what `infer` takes (resizing to their batch)."""
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
        arrays = [
            np.ascontiguousarray(a, dtype=np.float32 if _quantiser(d) else d["dtype"])
            for d, a in zip(self._in, arrays, strict=True)
        ]
        single = len(arrays) == 1 and len(self._out) == 1 and _quantiser(self._in[0]) is None
        return arrays[0] if single else arrays

    def infer(self, prepared: Any) -> Any:  # replaced per instance by _bind()
        raise NotImplementedError

    def bind_compute(self, arrays: Sequence[np.ndarray]) -> Any:
        """The inputs set into the interpreter's own tensors once (quantised where the model is integer): a
        run is `invoke` alone, its outputs left in the interpreter. One interpreter holds one input set."""
        arrays = self._layout.to_model(arrays) if self._layout else arrays
        self._prepare(arrays)  # resizes to the batch
        for detail, array in zip(self._in, arrays, strict=True):
            quantise = _quantiser(detail)
            self._interpreter.set_tensor(detail["index"], array if quantise is None else quantise(array))
        return self._interpreter.invoke

    def compute(self, bound: Any) -> Any:
        return bound()

    def fetch(self, result: Any) -> list[np.ndarray]:
        outputs = [result] if isinstance(result, np.ndarray) else list(result)
        found = [_dequantise(d, np.array(o)) for d, o in zip(self._out, outputs, strict=True)]
        return self._layout.from_model(found) if self._layout else found

    def delegated_fraction(self) -> float | None:
        if self.options["xnnpack"] == "off":
            return None
        return delegated_share(self._interpreter._get_ops_details())

    def details(self) -> dict[str, Any]:
        found = {"xnnpack": self.options["xnnpack"], "io_types": [np.dtype(d["dtype"]).name for d in self._in]}
        if self._layout:  # the order and layout the converted model takes the source's inputs in
            found["input_layout"] = [{"position": pos, "permutation": list(perm)} for pos, perm in self._layout.inputs]
        if fp16_weights_only(self._interpreter):
            found["precision"] = "fp32 (fp16 weights)"  # stored at half size, computed in float32
        return found


def fp16_weights_only(interpreter: Any) -> bool:
    """Whether a flatbuffer's float16 tensors are all weights that DEQUANTIZE ops turn into float32 at
    load: a float32 model stored at half size (TFLiteConverter's float16 optimisation, the usual form of
    published mobile models), not a model that computes in float16."""
    half = {d["index"] for d in interpreter.get_tensor_details() if d["dtype"] == np.float16}
    if not half:
        return False
    for op in interpreter._get_ops_details():
        if op["op_name"] == "DELEGATE":  # a partition of the nodes listed before it, weights among its inputs
            continue
        if half & {int(i) for i in op["outputs"]}:
            return False  # a float16 tensor computed at run time
        if op["op_name"] != "DEQUANTIZE" and half & {int(i) for i in op["inputs"] if i >= 0}:
            return False  # an op that reads float16 itself
    return True


def delegated_share(ops: list[dict]) -> float:
    """The share of the model's own nodes that delegate partitions replaced.

    The interpreter lists the original nodes and then one DELEGATE node per partition. A
    partition's boundary is its DELEGATE node's inputs and outputs, so the nodes it took are
    those reached walking back from its outputs without crossing its inputs.
    """
    own = [op for op in ops if op["op_name"] != "DELEGATE"]
    if not own:
        return 0.0
    producer = {t: i for i, op in enumerate(own) for t in op["outputs"]}
    taken: set[int] = set()
    for partition in (op for op in ops if op["op_name"] == "DELEGATE"):
        boundary = set(partition["inputs"])
        stack = [t for t in partition["outputs"] if t in producer]
        while stack:
            node = producer[stack.pop()]
            if node in taken:
                continue
            taken.add(node)
            stack += [t for t in own[node]["inputs"] if t >= 0 and t not in boundary and t in producer]
    return len(taken) / len(own)


def _quantiser(detail: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray] | None:
    """float -> the tensor's integer type with its scale and zero point; None for a float tensor."""
    dtype = np.dtype(detail["dtype"])
    scale, zero = detail.get("quantization", (0.0, 0))
    if not np.issubdtype(dtype, np.integer) or not scale:
        return None
    info = np.iinfo(dtype)
    inverse = np.float32(1.0 / scale)

    def quantise(x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x * inverse) + zero, info.min, info.max).astype(dtype)

    return quantise


def _dequantise(detail: Mapping[str, Any], array: np.ndarray) -> np.ndarray:
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.issubdtype(array.dtype, np.integer) and scale:
        return ((array.astype(np.float32) - zero) * np.float32(scale)).astype(np.float32)
    return array
