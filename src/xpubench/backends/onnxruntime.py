"""ONNX Runtime: the CPU execution provider, and CUDA or TensorRT on an NVIDIA GPU."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpubench.backends.base import Backend, TensorSpec

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    times_compute = True
    formats = ("onnx",)
    devices = ("cpu", "cuda")
    precisions = ("fp32", "fp16", "int8-dynamic", "int8")
    option_choices = {"ep": ("default", "tensorrt")}  # on cuda: the CUDA provider, or TensorRT's
    distribution = "onnxruntime"
    module = "onnxruntime"
    depends_on = ("onnxruntime-gpu",)  # the CUDA build, installed instead of onnxruntime

    @classmethod
    def unavailable_reason(
        cls, device: str | None = None, precision: str | None = None, options: Mapping[str, str] | None = None
    ) -> str | None:
        reason = super().unavailable_reason(device, precision, options)
        if reason:
            return reason
        device, options = device or cls.devices[0], cls.resolve_options(options)
        if _on_cpu(device):
            return "the TensorRT provider runs on cuda, not cpu" if options["ep"] != "default" else None
        import onnxruntime as ort

        wanted = _providers(device, options)[0]
        if wanted not in ort.get_available_providers():
            return f"this onnxruntime build has no {wanted}: install onnxruntime-gpu {ort.__version__}"
        return None

    def load(self) -> None:
        import onnxruntime as ort

        self._options = ort.SessionOptions()
        self._options.intra_op_num_threads = self.threads
        self._options.inter_op_num_threads = 1
        self._options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._options.log_severity_level = 3
        self._providers = _providers(self.device, self.options)
        self._session = ort.InferenceSession(str(self.artifact), self._options, providers=self._providers)
        self._names = [i.name for i in self._session.get_inputs()]
        # The timed call is the runtime's own `run`, bound once: no layer of ours in between. On a
        # GPU it copies host inputs in and outputs back, so it returns with the result ready.
        self.infer = functools.partial(self._session.run, None)
        self._placement: dict[str, int] | None = None

    @property
    def inputs(self) -> list[TensorSpec]:
        return [
            TensorSpec(
                i.name,
                tuple(d if isinstance(d, int) and d > 0 else None for d in i.shape),
                np.dtype(_ORT_TYPES.get(i.type, np.float32)),
                dims=tuple(d if isinstance(d, str) else None for d in i.shape),
            )
            for i in self._session.get_inputs()
        ]

    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        return {name: np.ascontiguousarray(a) for name, a in zip(self._names, arrays, strict=True)}

    def infer(self, prepared: Any) -> Any:  # replaced per instance by the bound session.run
        return self._session.run(None, prepared)

    def fetch(self, result: Any) -> list[np.ndarray]:
        return list(result)

    def bind_compute(self, arrays: Sequence[np.ndarray]) -> Any:
        """I/O binding: the inputs copied once into ONNX Runtime's own values on the device, the outputs
        bound to values it allocated on the first run and reuses, so a run copies nothing in or out."""
        import onnxruntime as ort

        binding = self._session.io_binding()
        device, index = ("cpu", 0) if _on_cpu(self.device) else ("cuda", _cuda_index(self.device))
        for name, array in zip(self._names, arrays, strict=True):
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device, index)
            binding.bind_ortvalue_input(name, value)
        outputs = [o.name for o in self._session.get_outputs()]
        for name in outputs:
            binding.bind_output(name, device, index)
        self._session.run_with_iobinding(binding)  # allocates the outputs once
        values = binding.get_outputs()
        binding.clear_binding_outputs()
        for name, value in zip(outputs, values, strict=True):
            binding.bind_ortvalue_output(name, value)
        return binding

    def compute(self, bound: Any) -> Any:
        self._session.run_with_iobinding(bound)  # returns when the provider has finished (it syncs its stream)

    def delegated_fraction(self) -> float | None:
        """On a GPU: the share of nodes placed on the GPU provider, read from a profiled run."""
        if _on_cpu(self.device):
            return None
        placement = self._node_placement()
        total = sum(placement.values())
        return placement.get(self._providers[0], 0) / total if total else 0.0

    def details(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"providers": self._session.get_providers()}
        if self._placement is not None:
            extra["node_placement"] = self._placement
        return extra

    def _node_placement(self) -> dict[str, int]:
        """Nodes per execution provider, from one profiled run of a second session."""
        if self._placement is None:
            import json

            import onnxruntime as ort

            options = ort.SessionOptions()
            options.graph_optimization_level = self._options.graph_optimization_level
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tempfile.mkdtemp(prefix="xpubench-ort-")) / "profile")
            options.log_severity_level = 3
            session = ort.InferenceSession(str(self.artifact), options, providers=self._providers)
            feeds = {}
            for i in session.get_inputs():
                shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
                feeds[i.name] = np.zeros(shape, dtype=_ORT_TYPES.get(i.type, np.float32))
            session.run(None, feeds)
            events = json.loads(Path(session.end_profiling()).read_text())
            nodes: dict[str, str] = {}
            for event in events:
                args = event.get("args") or {}
                if event.get("cat") == "Node" and "provider" in args:
                    nodes[event["name"].removesuffix("_kernel_time")] = args["provider"]
            self._placement = {}
            for provider in nodes.values():
                self._placement[provider] = self._placement.get(provider, 0) + 1
        return self._placement


def _on_cpu(device: str) -> bool:
    return device.split(":")[0] == "cpu"


def _cuda_index(device: str) -> int:
    """`cuda` -> 0, `cuda:1` -> 1."""
    return int(device.partition(":")[2] or 0)


def _providers(device: str, options: Mapping[str, str]) -> list[str]:
    if _on_cpu(device):
        return ["CPUExecutionProvider"]
    if options.get("ep") == "tensorrt":
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]
