"""A TorchScript module (torch.jit.script / torch.jit.trace) -> ONNX, so a user's .pt reaches every ONNX-fed runtime."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from xpubench.convert.graph import ConversionContext, NoConversion, converter

EXAMPLE_BATCH = 2  # the exporter traces one call; the batch axis is then declared dynamic


def input_names(module: Any) -> list[str]:
    """The forward's tensor arguments, by the names its author gave them (`self` dropped)."""
    return [a.name for a in module.forward.schema.arguments[1:]]


@converter("torchscript:fp32", "onnx:fp32", requires=("torch", "onnx"))
def torchscript_to_onnx(src: Path, dst: Path, ctx: ConversionContext) -> None:
    """The TorchScript-based exporter (the torch.export one takes no ScriptModule), on example inputs of the
    --shape sample shapes: a TorchScript file records no input shapes of its own."""
    import torch

    from xpubench.convert.keras import native_output_silenced

    module = torch.jit.load(str(src), map_location="cpu").eval()
    names = input_names(module)
    missing = [n for n in names if ctx.shapes.get(n, ctx.shapes.get("")) is None]
    if missing:
        raise NoConversion(f"exporting TorchScript to ONNX needs the input shapes: give --shape {missing[0]}=D,D,...")
    example = tuple(torch.randn(EXAMPLE_BATCH, *ctx.shapes.get(n, ctx.shapes.get(""))) for n in names)
    outputs = module(*example)
    count = len(outputs) if isinstance(outputs, tuple | list) else 1
    output_names = [f"output_{i}" for i in range(count)]
    # The TorchScript exporter warns that it is the legacy one: it is the one that takes a ScriptModule.
    with native_output_silenced(), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(dst),
            dynamo=False,
            input_names=names,
            output_names=output_names,
            dynamic_axes={n: {0: "batch"} for n in (*names, *output_names)},
        )
