"""PyTorch on a torch.export program (.pt2), eager or torch.compile, or on a TorchScript module (.pt), float32 or
bfloat16, CPU or CUDA."""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from xpubench.backends.base import Backend, TensorSpec

_C_COMPILERS = ("c++", "g++", "clang++")


class TorchBackend(Backend):
    name = "torch"
    times_compute = True
    formats = ("pt2", "torchscript")
    devices = ("cpu", "cuda")
    precisions = ("fp32", "bf16")
    option_choices = {"mode": ("eager", "compile")}
    swept_options = ("mode",)
    distribution = "torch"
    module = "torch"
    depends_on = ("onnxscript",)  # torch.onnx.export(dynamo=True) writes ONNX with it

    @classmethod
    def artifact_kind(cls, precision: str, options: Mapping[str, str] | None = None) -> str:
        return "pt2:fp32"  # bf16 is the float32 program cast when it is loaded

    @classmethod
    def artifact_kinds(cls, precision: str, options: Mapping[str, str] | None = None) -> tuple[str, ...]:
        """A TorchScript source runs as it is, eagerly; torch.compile takes no ScriptModule, so it gets the
        torch.export program (which a TorchScript source reaches through ONNX)."""
        if cls.resolve_options(options)["mode"] == "compile":
            return ("pt2:fp32",)
        return ("torchscript:fp32", "pt2:fp32")

    @classmethod
    def unavailable_reason(
        cls, device: str | None = None, precision: str | None = None, options: Mapping[str, str] | None = None
    ) -> str | None:
        reason = super().unavailable_reason(device, precision, options)
        if reason:
            return reason
        mode = cls.resolve_options(options)["mode"]
        if (device or cls.devices[0]).split(":")[0] == "cuda":  # there is an NVIDIA GPU: can this torch use it?
            import torch

            if torch.version.cuda is None:
                return f"this torch ({torch.__version__}) is a CPU-only build"
            if not torch.cuda.is_available():
                return f"torch {torch.__version__} sees no usable CUDA device (torch.cuda.is_available() is False)"
            if precision == "bf16" and not torch.cuda.is_bf16_supported():
                return f"{torch.cuda.get_device_name()} has no bfloat16 support"
            if mode == "compile" and importlib.util.find_spec("triton") is None:
                return "torch.compile on CUDA needs triton, which is not installed"
        elif mode == "compile" and not (os.environ.get("CXX") or any(shutil.which(c) for c in _C_COMPILERS)):
            return "torch.compile on the CPU needs a C++ compiler (none of c++, g++, clang++ is on PATH)"
        return None

    def load(self) -> None:
        import torch

        from xpubench.convert.torch import META_FILE

        torch.set_num_threads(self.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # allowed only before torch's first parallel work in this process
            pass
        self._device = torch.device(self.device if self.device != "cuda" else "cuda:0")
        self._dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        if self.artifact.suffix != ".pt2":  # TorchScript
            self._open_torchscript()
            return
        extra = {META_FILE: ""}
        program = torch.export.load(str(self.artifact), extra_files=extra)
        self._specs = _input_specs(program, extra[META_FILE])
        if self._device.type == "cuda":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, self._device)
        # The shape guards and input checks of ep.module() run Python on every call (~100 us here);
        # the sweep feeds shapes that fit.
        module = program.module(check_guards=False)
        module.validate_inputs = False
        if self._dtype != torch.float32:
            _cast_floats(module, self._dtype)
        if self.options["mode"] == "compile":
            self._module = torch.compile(module)  # compiles on the first call: timed as the cold start
            self._call = self._module
        else:
            self._module = module
            # forward itself: Module.__call__'s hook dispatch costs ~10 us, and the program's hooks
            # only matter for nn.Module inputs, which a benchmark never passes.
            self._call = module.forward
        self._bind()

    def _open_torchscript(self) -> None:
        import torch

        from xpubench.convert.torchscript import input_names

        module = torch.jit.load(str(self.artifact), map_location=self._device).eval()
        if self._dtype != torch.float32:
            module.to(self._dtype)
        # Tensor arguments of unknown shape and dtype: float32 samples, shaped by --shape.
        self._specs = [TensorSpec(n, (None,), np.dtype(np.float32), rank_known=False) for n in input_names(module)]
        self._module = module
        self._call = module.forward
        self._bind()

    def _bind(self) -> None:
        """The timed call: host tensors in, onto the device and into the precision, run, host tensors out."""
        import torch

        module = self._call
        inference_mode = torch.inference_mode
        device, dtype = self._device, self._dtype
        float_inputs = [np.dtype(s.dtype).kind == "f" for s in self._specs]
        if device.type == "cpu" and dtype == torch.float32:

            def infer(xs: Sequence[Any]) -> Any:
                with inference_mode():
                    return module(*xs)

        elif device.type == "cpu":

            def infer(xs: Sequence[Any]) -> Any:
                with inference_mode():
                    return module(*[x.to(dtype) if f else x for x, f in zip(xs, float_inputs, strict=True)])

        else:
            from torch.utils._pytree import tree_map

            def to_host(t: Any) -> Any:
                return t.to("cpu") if isinstance(t, torch.Tensor) else t

            def infer(xs: Sequence[Any]) -> Any:
                with inference_mode():
                    moved = [x.to(device, dtype) if f else x.to(device) for x, f in zip(xs, float_inputs, strict=True)]
                    out = module(*moved)
                    # Copying to the host waits for the device: the time read after this is the kernels' too.
                    return tree_map(to_host, out)

        self.infer = infer

    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self._specs)

    def prepare(self, arrays: Sequence[np.ndarray]) -> Any:
        import torch

        return [
            torch.from_numpy(np.ascontiguousarray(a, dtype=s.dtype)) for a, s in zip(arrays, self._specs, strict=True)
        ]

    def infer(self, prepared: Any) -> Any:  # replaced per instance by _bind()
        raise NotImplementedError

    def bind_compute(self, arrays: Sequence[np.ndarray]) -> Any:
        """The inputs as tensors on the device, in the precision, once: a run is the module's call alone."""
        float_inputs = [np.dtype(s.dtype).kind == "f" for s in self._specs]
        return [x.to(self._device, self._dtype) if f else x.to(self._device)
                for x, f in zip(self.prepare(arrays), float_inputs, strict=True)]

    def compute(self, bound: Any) -> Any:
        import torch

        with torch.inference_mode():
            out = self._call(*bound)
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)  # the kernels are the compute: wait for them
        return out

    def fetch(self, result: Any) -> list[np.ndarray]:
        import torch
        from torch.utils._pytree import tree_leaves

        out = []
        for leaf in tree_leaves(result):
            if isinstance(leaf, torch.Tensor):
                leaf = leaf.detach().to("cpu")
                out.append((leaf.float() if leaf.is_floating_point() else leaf).numpy())
            else:
                out.append(np.asarray(leaf))
        return out

    def details(self) -> dict[str, Any]:
        import torch

        return {
            "mode": self.options["mode"],
            "dtype": str(self._dtype).removeprefix("torch."),
            "device": str(self._device),
            "intra_op_threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
        }

    def close(self) -> None:
        self._module = self._call = None
        self.infer = None  # type: ignore[assignment]  (drops the closure that holds the module)


_NUMPY_OF_TORCH = {
    "float32": np.float32,
    "float64": np.float64,
    "float16": np.float16,
    "bfloat16": np.float32,  # numpy has no bfloat16: the host hands float32 and infer casts
    "int64": np.int64,
    "int32": np.int32,
    "int16": np.int16,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


def _input_specs(program: Any, meta_text: str) -> list[TensorSpec]:
    """One TensorSpec per user input of the program; the ONNX names where xpubench stored them."""
    import json

    import torch

    meta = json.loads(meta_text) if meta_text else {}
    user = list(program.graph_signature.user_inputs)
    names = meta.get("inputs") if len(meta.get("inputs", [])) == len(user) else user
    values = {n.name: n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder"}
    specs = []
    for name, placeholder in zip(names, user, strict=True):
        value = values.get(placeholder)
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"the program's input {placeholder} is not a tensor: xpubench feeds tensors only")
        shape = tuple(d if isinstance(d, int) else None for d in value.shape)
        dtype = _NUMPY_OF_TORCH.get(str(value.dtype).removeprefix("torch."), np.float32)
        specs.append(TensorSpec(name, shape, np.dtype(dtype)))
    return specs


def _cast_floats(module: Any, dtype: Any) -> None:
    """Cast the whole program to `dtype`: parameters, buffers, lifted constants (plain attributes
    that Module.to() skips) and float32 dtypes written into the graph (casts, tensor factories)."""
    import torch

    module.to(dtype)
    for node in module.graph.nodes:
        if node.op == "get_attr":
            owner, _, field = node.target.rpartition(".")
            holder = module.get_submodule(owner) if owner else module
            value = getattr(holder, field)
            if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
                if field in holder._buffers:
                    holder._buffers[field] = value.to(dtype)
                elif not isinstance(value, torch.nn.Parameter):
                    setattr(holder, field, value.to(dtype))
        elif node.op == "call_function":
            node.args = tuple(dtype if a is torch.float32 else a for a in node.args)
            node.kwargs = {k: dtype if v is torch.float32 else v for k, v in node.kwargs.items()}
    module.recompile()
