"""torch.export of a translated ONNX graph, its batch dim dynamic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from xpubench.convert.onnx2torch.errors import UnsupportedOnnx, export_errors
from xpubench.convert.onnx2torch.translate import build_module
from xpubench.convert.onnx2torch.values import import_torch, torch_dtype


def _onnx_input_shapes(model: Any, shapes: Mapping[str, tuple[int, ...]]) -> list[tuple[str, list[int], bool, int]]:
    """(name, example shape, batch is dynamic, onnx element type) of each graph input."""
    initializers = {i.name for i in model.graph.initializer}
    out = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim]
        dynamic = bool(dims) and dims[0] is None
        given = shapes.get(value.name)
        if given is not None and len(given) == len(dims) - 1:
            dims = [dims[0], *given]
        if any(d is None for d in dims[1:]):
            raise UnsupportedOnnx(
                f"input {value.name} has dynamic dims besides the batch ({dims}): give its shape to convert it to torch"
            )
        example = [2 if dynamic else dims[0], *dims[1:]] if dims else []  # 2, not 1: torch specialises 0 and 1
        out.append((value.name, example, dynamic, tensor_type.elem_type))
    return out


def _example(shape: Sequence[int], onnx_type: int, seed: int) -> Any:
    torch = import_torch()
    dtype = torch_dtype(onnx_type)
    if dtype.is_floating_point:
        return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)
    return torch.zeros(*shape, dtype=dtype)  # indices: zeros are valid for any table


def export_program(model: Any, shapes: Mapping[str, tuple[int, ...]] | None = None) -> tuple[Any, list[str]]:
    """The ONNX ModelProto as a torch.export program (batch dynamic where the ONNX input's is), and its input names.

    `shapes` gives the non-batch dims of inputs whose ONNX shape leaves them open."""
    torch = import_torch()

    inputs = _onnx_input_shapes(model, shapes or {})
    module = build_module(model)
    examples = tuple(_example(shape, kind, seed) for seed, (_, shape, _, kind) in enumerate(inputs))
    batch = torch.export.Dim("batch", min=1)
    dynamic = tuple({0: batch} if is_dynamic else None for _, _, is_dynamic, _ in inputs)
    with export_errors("the translated ONNX graph"), torch.inference_mode(False), torch.no_grad():
        # forward(*inputs): the dynamic shapes of the one variadic argument, as a tuple.
        program = torch.export.export(
            module, examples, dynamic_shapes=(dynamic,) if any(dynamic) else None, strict=False
        )
    return program, [name for name, *_ in inputs]
