"""NVIDIA TensorRT itself: an engine built from the ONNX model, run on CUDA buffers held by torch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xpubench.backends.base import Backend, TensorSpec


class TensorRTBackend(Backend):
    name = "tensorrt"
    formats = ("onnx",)
    devices = ("cuda",)
    precisions = ("fp32", "fp16", "int8")
    distribution = "tensorrt"
    module = "tensorrt"
    depends_on = ("torch",)  # it holds its CUDA buffers in torch tensors

    @classmethod
    def artifact_kind(cls, precision: str, options: Mapping[str, str] | None = None) -> str:
        # int8 is TensorRT's explicit quantisation: the calibrated QDQ model, not its own calibrator.
        return "onnx:int8" if precision == "int8" else "onnx:fp32"

    @classmethod
    def unavailable_reason(
        cls, device: str | None = None, precision: str | None = None, options: Mapping[str, str] | None = None
    ) -> str | None:
        reason = super().unavailable_reason(device, precision, options)
        if reason:
            return reason
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            return "the tensorrt backend holds its CUDA buffers in torch: install torch"
        import torch

        if not torch.cuda.is_available():
            return "torch here has no CUDA (a CPU build): install a CUDA build of torch"
        return None

    def load(self) -> None:
        import tensorrt as trt
        import torch

        self._torch = torch
        self._device = torch.device(self.device if ":" in self.device else "cuda:0")
        self._logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(self.artifact.read_bytes()):
            raise RuntimeError(f"TensorRT cannot parse {self.artifact.name}: {parser.get_error(0).desc()}")
        self._network_inputs = [network.get_input(i) for i in range(network.num_inputs)]
        self._specs = [
            TensorSpec(t.name, tuple(d if d > 0 else None for d in t.shape), np.dtype(trt.nptype(t.dtype)))
            for t in self._network_inputs
        ]
        self._trt, self._builder, self._network = trt, builder, network
        self._engine_shape: tuple[int, ...] | None = None
        self._stream = torch.cuda.Stream(self._device)

    def _build(self, shapes: list[tuple[int, ...]]) -> None:
        """One engine per input shape: dynamic dimensions are fixed to what is fed (not timed)."""
        trt, torch = self._trt, self._torch
        config = self._builder.create_builder_config()
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        elif self.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
        profile = self._builder.create_optimization_profile()
        for tensor, shape in zip(self._network_inputs, shapes, strict=True):
            profile.set_shape(tensor.name, shape, shape, shape)
        config.add_optimization_profile(profile)
        serialized = self._builder.build_serialized_network(self._network, config)
        if serialized is None:
            raise RuntimeError(f"TensorRT could not build a {self.precision} engine for {self.artifact.name}")
        engine = trt.Runtime(self._logger).deserialize_cuda_engine(serialized)
        self._engine_bytes = serialized.nbytes
        context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        for name, shape in zip(inputs, shapes, strict=True):
            context.set_input_shape(name, shape)
        device_in = [
            torch.empty(shape, dtype=_torch_dtype(torch, trt.nptype(engine.get_tensor_dtype(n))), device=self._device)
            for n, shape in zip(inputs, shapes, strict=True)
        ]
        device_out = [
            torch.empty(tuple(context.get_tensor_shape(n)), device=self._device,
                        dtype=_torch_dtype(torch, trt.nptype(engine.get_tensor_dtype(n))))
            for n in outputs
        ]
        for name, tensor in zip(inputs + outputs, device_in + device_out, strict=True):
            context.set_tensor_address(name, tensor.data_ptr())
        host_out = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in device_out]
        stream = self._stream
        execute = context.execute_async_v3

        def infer(host_in: list[Any]) -> list[Any]:
            """Host in, host out: copies both ways and the engine, then waits for the stream."""
            with torch.cuda.stream(stream):
                for d, h in zip(device_in, host_in, strict=True):
                    d.copy_(h, non_blocking=True)
                execute(stream.cuda_stream)
                for h, d in zip(host_out, device_out, strict=True):
                    h.copy_(d, non_blocking=True)
            stream.synchronize()
            return host_out

        self._engine, self._context, self.infer = engine, context, infer
        self._engine_shape = tuple(s for shape in shapes for s in shape)

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._specs

    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        shapes = [tuple(a.shape) for a in arrays]
        if self._engine_shape != tuple(s for shape in shapes for s in shape):
            self._build(shapes)
        torch = self._torch
        return [torch.from_numpy(np.ascontiguousarray(a, dtype=s.dtype)).pin_memory() for a, s in
                zip(arrays, self._specs, strict=True)]

    def infer(self, prepared: Any) -> Any:  # replaced by the engine's call once it is built
        raise RuntimeError("prepare() builds the engine first")

    def fetch(self, result: Any) -> list[np.ndarray]:
        return [t.numpy().astype(np.float32, copy=True) for t in result]

    def delegated_fraction(self) -> float | None:
        return 1.0  # an engine runs every layer on the GPU, or fails to build

    def details(self) -> dict[str, Any]:
        return {"tensorrt": self._trt.__version__, "engine_bytes": getattr(self, "_engine_bytes", None)}


def _torch_dtype(torch: Any, dtype: Any) -> Any:
    return {np.float32: torch.float32, np.float16: torch.float16, np.int8: torch.int8, np.int32: torch.int32,
            np.int64: torch.int64, np.bool_: torch.bool}[np.dtype(dtype).type]
