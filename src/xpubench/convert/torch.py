"""PyTorch artifacts: ONNX -> torch.export (.pt2) through the onnx2torch translator, .pt2 -> ONNX, nn.Module -> .pt2."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xpubench.convert.graph import ConversionContext, converter
from xpubench.convert.onnx2torch.errors import export_errors

# Stored inside the .pt2 (torch.export.save's extra_files): the model's own input and output names.
META_FILE = "xpubench.json"


def _load_onnx(src: Path) -> Any:
    import onnx

    return onnx.load(str(src))


def _save(program: Any, out: Path, inputs: Sequence[str], outputs: Sequence[str]) -> Path:
    import torch

    out = Path(out)
    tmp = out.with_name(out.stem + ".tmp.pt2")  # torch.export.save wants the .pt2 suffix
    meta = json.dumps({"inputs": list(inputs), "outputs": list(outputs)})
    torch.export.save(program, str(tmp), extra_files={META_FILE: meta})
    tmp.replace(out)
    return out


def read_meta(path: Path) -> dict[str, Any]:
    """The input/output names stored with a .pt2 by xpubench ({} for a .pt2 made elsewhere)."""
    import torch

    extra = {META_FILE: ""}
    torch.export.load(str(path), extra_files=extra)
    return json.loads(extra[META_FILE]) if extra[META_FILE] else {}


def onnx_model_to_pt2(model: Any, out: Path, shapes: Mapping[str, tuple[int, ...]] | None = None) -> Path:
    """Translate an ONNX ModelProto into a torch.export program saved at `out`."""
    from xpubench.convert.onnx2torch import export_program

    program, inputs = export_program(model, shapes)
    return _save(program, out, inputs, [o.name for o in model.graph.output])


def module_to_pt2(module: Any, example_inputs: Sequence[Any], out: Path, dynamic_batch: bool = True) -> Path:
    """Export a user's nn.Module (in eval mode) to a .pt2 file; axis 0 of every input is the batch,
    dynamic unless `dynamic_batch` is False."""
    import torch

    examples = tuple(x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x)) for x in example_inputs)
    dynamic = None
    if dynamic_batch:
        # torch specialises sizes 0 and 1: trace with a batch of at least 2.
        examples = tuple(torch.cat([x] * (-(-2 // x.shape[0]))) if x.shape[0] < 2 else x for x in examples)
        batch = torch.export.Dim("batch", min=1)
        dynamic = tuple({0: batch} for _ in examples)
    was_training = module.training
    module.eval()
    try:
        with export_errors(type(module).__name__), torch.no_grad():
            program = torch.export.export(module, examples, dynamic_shapes=dynamic, strict=False)
    finally:
        module.train(was_training)
    names = _argument_names(module, len(examples)) or list(program.graph_signature.user_inputs)
    outputs = [f"output_{i}" for i in range(len(program.graph_signature.user_outputs))]
    return _save(program, out, names, outputs)


def _argument_names(module: Any, count: int) -> list[str] | None:
    """The names of forward's first `count` positional parameters (torch.export lower-cases its own)."""
    import inspect

    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    names = [p.name for p in params if p.kind in kinds]
    return names[:count] if len(names) >= count else None


@converter("onnx:fp32", "pt2:fp32", requires=("torch", "onnx"))
def onnx_to_pt2(src: Path, dst: Path, ctx: ConversionContext) -> None:
    onnx_model_to_pt2(_load_onnx(src), dst, ctx.shapes)


@converter("pt2:fp32", "onnx:fp32", requires=("torch", "onnx", "onnxscript"))
def pt2_to_onnx(src: Path, dst: Path, ctx: ConversionContext) -> None:
    """torch.onnx's torch.export-based exporter on the stored program, in one file, its dynamic
    batch kept."""
    import torch

    from xpubench.convert.keras import native_output_silenced

    extra = {META_FILE: ""}
    program = torch.export.load(str(src), extra_files=extra)
    meta = json.loads(extra[META_FILE]) if extra[META_FILE] else {}
    n_in = len(program.graph_signature.user_inputs)
    n_out = len(program.graph_signature.user_outputs)
    names = meta["inputs"] if len(meta.get("inputs", [])) == n_in else [f"input_{i}" for i in range(n_in)]
    outputs = meta["outputs"] if len(meta.get("outputs", [])) == n_out else [f"output_{i}" for i in range(n_out)]
    tmp = dst.with_name(dst.stem + ".tmp.onnx")
    with export_errors(src.name), native_output_silenced():
        torch.onnx.export(
            program,
            (),
            str(tmp),
            dynamo=True,
            external_data=False,
            input_names=names,
            output_names=outputs,
            verbose=False,
        )
    tmp.replace(dst)
