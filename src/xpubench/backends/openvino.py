"""OpenVINO on the CPU: float32 or bfloat16 from the ONNX file, int8 from an NNCF-quantised IR."""

from __future__ import annotations

import functools
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xpubench.backends.base import Backend, TensorSpec

# What the CPU plugin computes in: its default is bf16 (or f16) wherever the CPU can, so float32
# is asked for explicitly. An int8 IR runs its quantised layers in int8 whatever this says; the
# hint sets the precision of the rest.
_INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
# Runtime-model nodes that hold or pass data rather than compute.
_NOT_EXECUTED = frozenset({"Const", "Input", "Output", "Parameter", "Result"})


@functools.cache
def _cpu_capabilities() -> tuple[str, str]:
    """The CPU plugin's OPTIMIZATION_CAPABILITIES (joined) and the CPU's name."""
    import openvino as ov

    core = ov.Core()
    return " ".join(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")), core.get_property("CPU", "FULL_DEVICE_NAME")


@dataclass(frozen=True)
class _BoundRequest:
    """`--timing compute`: an infer request with its input tensors set, and its synchronous infer."""

    request: Any
    run: Callable[[], Any]


def _thread_pinned() -> bool:
    """Whether the calling thread is pinned to fewer CPUs than the process's main thread (Linux)."""
    if not hasattr(os, "sched_getaffinity"):
        return False
    return os.sched_getaffinity(0) != os.sched_getaffinity(os.getpid())


class OpenVINOBackend(Backend):
    name = "openvino"
    times_compute = True
    compute_clock = "InferRequest.latency"
    formats = ("onnx", "openvino")
    devices = ("cpu",)
    precisions = ("fp32", "bf16", "int8")
    # PERFORMANCE_HINT. With one request in flight, as here, "throughput" plans several streams
    # and the request runs on one of them, with threads / streams threads (details() says how many).
    option_choices = {"hint": ("latency", "throughput")}
    distribution = "openvino"
    module = "openvino"
    depends_on = ("nncf",)  # it quantises the int8 IR

    @classmethod
    def artifact_kind(cls, precision: str, options: Mapping[str, str] | None = None) -> str:
        # float32 and bfloat16 read the ONNX file directly (bf16 is a compile-time hint);
        # int8 is an IR with FakeQuantize nodes that NNCF calibrated.
        return "openvino:int8" if precision == "int8" else "onnx:fp32"

    @classmethod
    def unavailable_reason(
        cls, device: str | None = None, precision: str | None = None, options: Mapping[str, str] | None = None
    ) -> str | None:
        reason = super().unavailable_reason(device, precision, options)
        if reason:
            return reason
        wanted = {"bf16": "BF16", "int8": "INT8"}.get(precision)
        if wanted:
            capabilities, cpu = _cpu_capabilities()
            if wanted not in capabilities.split():
                return f"OpenVINO finds no {wanted} support on this CPU ({cpu}; it has {capabilities})"
        return None

    def load(self) -> None:
        precision = self.precision
        if precision not in self.precisions:
            raise ValueError(f"openvino has no {precision} variant (it has {', '.join(self.precisions)})")
        if precision == "bf16":
            # The plugin would quietly run float32 instead: a cell must not be labelled bf16 then.
            reason = self.unavailable_reason(self.device, precision, self.options)
            if reason:
                raise RuntimeError(reason)
        import openvino as ov

        self._core = ov.Core()
        self._model = self._core.read_model(str(self.artifact))
        self._declared = [i.get_partial_shape() for i in self._model.inputs]
        self._config = {
            "INFERENCE_PRECISION_HINT": _INFERENCE_PRECISION[precision],
            "PERFORMANCE_HINT": self.options["hint"].upper(),
            "INFERENCE_NUM_THREADS": self.threads,
        }
        if _thread_pinned():
            # The plugin's own pinning resets the calling thread to the process's CPUs (measured: a split's
            # part pinned to CPU 1 then ran on CPU 0, beside the other part): the caller's pinning stands.
            self._config["ENABLE_CPU_PINNING"] = False
        self._shapes: tuple[tuple[int, ...], ...] | None = None
        self._compiled: Any = None
        self._request: Any = None
        if all(s.is_static for s in self._declared):
            self._compile(tuple(tuple(s.to_shape()) for s in self._declared))

    def _compile(self, shapes: tuple[tuple[int, ...], ...]) -> None:
        """Compile for these exact input shapes: with static shapes the CPU plugin plans memory and
        picks kernels once, at compile time, instead of for dynamic shapes at run time."""
        import openvino as ov

        wanted = {i: ov.PartialShape(list(s)) for i, s in zip(self._model.inputs, shapes, strict=True)}
        if any(i.get_partial_shape() != shape for i, shape in wanted.items()):
            self._model.reshape(wanted)
        # The old compiled model goes before the new one is made: one at a time in memory.
        self.__dict__.pop("infer", None)
        self._request = self._compiled = None
        self._compiled = self._core.compile_model(self._model, "CPU", self._config)
        self._request = self._compiled.create_infer_request()
        self._shapes = shapes
        self._outputs = list(self._compiled.outputs)  # in the model's order; results are keyed by these ports
        # The timed call: the plugin's own synchronous infer (the C++ binding, below the Python
        # wrapper that re-dispatches inputs and builds an OVDict). It reads the prepared host
        # tensors in place, as every CPU runtime reads its input arrays, and copies each output into
        # a new host array (share_outputs=False), so the result outlives the next call.
        raw = super(ov.InferRequest, self._request).infer
        self.infer = functools.partial(raw, share_outputs=False, decode_strings=True)

    @property
    def inputs(self) -> list[TensorSpec]:
        return [
            TensorSpec(
                i.get_any_name(),
                tuple(d.get_length() if d.is_static else None for d in declared),
                np.dtype(i.get_element_type().to_dtype()),
            )
            for i, declared in zip(self._model.inputs, self._declared, strict=True)
        ]

    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        """Host arrays -> OpenVINO tensors sharing their memory; a new input shape compiles anew (untimed)."""
        import openvino as ov

        specs = self.inputs
        arrays = [np.ascontiguousarray(a, dtype=s.dtype) for a, s in zip(arrays, specs, strict=True)]
        shapes = tuple(a.shape for a in arrays)
        if shapes != self._shapes:
            for spec, declared, shape in zip(specs, self._declared, shapes, strict=True):
                if not declared.compatible(ov.PartialShape(list(shape))):
                    raise ValueError(f"input {spec.name} takes shape {declared.to_string()}, not {list(shape)}")
            self._compile(shapes)
        tensors = [ov.Tensor(a, shared_memory=True) for a in arrays]
        return tensors[0] if len(tensors) == 1 else dict(enumerate(tensors))

    def infer(self, prepared: Any) -> Any:
        """Shadowed per instance by the call _compile() binds; reached only through the class, or a
        reference taken before the first prepare(), so it hands over to the bound call."""
        bound = self.__dict__.get("infer")
        if bound is None:
            raise RuntimeError("prepare() an input first: it compiles the model for the input's shape")
        return bound(prepared)

    def predict(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        prepared = self.prepare(arrays)  # first: it may compile anew and rebind `infer`
        return self.fetch(self.infer(prepared))

    def fetch(self, result: Any) -> list[np.ndarray]:
        return [np.asarray(result[port], dtype=np.float32) for port in self._outputs]

    def bind_compute(self, arrays: Sequence[np.ndarray]) -> Any:
        """An infer request of its own with the input tensors set once, as benchmark_app runs: a run reads
        them in place and leaves its outputs in the request's tensors (shared, not copied)."""
        import openvino as ov

        prepared = self.prepare(arrays)  # compiles for the shape
        tensors = [prepared] if isinstance(prepared, ov.Tensor) else list(prepared.values())
        request = self._compiled.create_infer_request()
        for port, tensor in zip(self._compiled.inputs, tensors, strict=True):
            request.set_tensor(port, tensor)
        return _BoundRequest(request, functools.partial(super(ov.InferRequest, request).infer, {}, True, False))

    def compute(self, bound: _BoundRequest) -> Any:
        return bound.run()

    def compute_ns(self, bound: _BoundRequest) -> int:
        # Timed in C++ around the plugin's infer, the clock benchmark_app reads; the host clock adds the
        # Python call into the binding (about 3 us here, 5 % of a 55 us model).
        return round(bound.request.latency * 1e6)

    def _ensure_compiled(self) -> None:
        if self._compiled is None:  # nothing fed yet: compile at batch 1 to report what would run
            self._compile(tuple(tuple(d.get_length() if d.is_static else 1 for d in s) for s in self._declared))

    def details(self) -> dict[str, Any]:
        """What the plugin really runs: executed layers counted by their runtime precision (a bf16
        or int8 request the CPU cannot honour shows up as f32 layers), and the compute-heavy layer
        types with theirs."""
        self._ensure_compiled()
        precisions: Counter[str] = Counter()
        heavy: Counter[str] = Counter()
        for op in self._compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            layer = info["layerType"].astype(str)
            if layer in _NOT_EXECUTED:
                continue
            runtime = info["runtimePrecision"].astype(str)
            precisions[runtime] += 1
            if layer in ("Convolution", "FullyConnected", "MatMul", "Deconvolution", "GroupConvolution"):
                heavy[f"{layer}:{runtime}"] += 1
        return {
            "runtime_precisions": dict(sorted(precisions.items())),
            "compute_layers": dict(sorted(heavy.items())),
            "inference_precision": self._compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
            "hint": self.options["hint"],
            "streams": int(self._compiled.get_property("NUM_STREAMS")),
        }

    def delegated_fraction(self) -> float | None:
        """None: the CPU plugin runs the whole graph; there is no accelerator to hand nodes to."""
        return None

    def model_bytes(self) -> int:
        if self.artifact.suffix == ".xml":
            return self.artifact.stat().st_size + self.artifact.with_suffix(".bin").stat().st_size
        return super().model_bytes()

    def close(self) -> None:
        self._request = None
        self._compiled = None
        self.__dict__.pop("infer", None)
