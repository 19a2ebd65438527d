"""The graph walk: an ONNX ModelProto becomes an nn.Module that runs its nodes with torch ops."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from xpubench.convert.onnx2torch.errors import UnsupportedOnnx, first_line
from xpubench.convert.onnx2torch.registry import OPS, Node, Op
from xpubench.convert.onnx2torch.values import as_tensor, import_torch, is_static


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import AttributeProto, helper

    attrs: dict[str, Any] = {}
    for attr in node.attribute:
        if attr.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
            raise UnsupportedOnnx(f"ONNX op {node.op_type} (node {node.name or '?'}) holds a subgraph: not supported")
        attrs[attr.name] = attr.t if attr.type == AttributeProto.TENSOR else helper.get_attribute_value(attr)
    return attrs


def _sorted_nodes(graph: Any, known: set[str]) -> list[Any]:
    """The graph's nodes in an order where every input is made before it is read."""
    pending = list(graph.node)
    available = set(known) | {""}
    ordered: list[Any] = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            missing = next(i for n in pending for i in n.input if i not in available)
            raise UnsupportedOnnx(f"ONNX tensor {missing!r} is read but never produced (or the graph has a cycle)")
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        ordered += ready
        for n in ready:
            available.update(n.output)
    return ordered


def _run(op: Op, node: Node, inputs: list[Any], folding: bool) -> list[Any]:
    """One node: numpy when every input is known and the op has a numpy form, else torch."""
    present = [x for x in inputs if x is not None]
    result = None
    if op.static is not None and all(is_static(x) for x in present):
        result = op.static(node, *inputs)
    if result is None:
        torch = import_torch()
        like = next((x for x in present if isinstance(x, torch.Tensor)), None)
        ranks = max((x.dim() for x in present if isinstance(x, torch.Tensor)), default=0)
        args = []
        for i, x in enumerate(inputs):
            if is_static(x) and i not in op.host:
                if op.scalars and like is not None and x.size == 1 and x.ndim <= ranks and x.dtype != object:
                    x = x.reshape(-1)[0].item()  # a Python number keeps the tensor's dtype (e.g. bf16)
                elif op.scalars and like is not None and x.size == 1 and x.dtype == object:
                    x = x.reshape(-1)[0]
                else:
                    x = as_tensor(x, like)
            args.append(x)
        result = op.run(node, *args)
    outputs = list(result) if isinstance(result, (list, tuple)) else [result]
    outputs = [_as_value(o) for o in outputs]
    if folding:
        outputs = [o if o is None or is_static(o) else o.detach().cpu().numpy() for o in outputs]
    return outputs


def _as_value(value: Any) -> Any:
    """numpy indexing hands back scalars (np.int64, SymInt): make them 0-d static arrays again."""
    if value is None or is_static(value) or hasattr(value, "dim"):
        return value
    if isinstance(value, (np.generic, int, float, bool)):
        return np.asarray(value)
    out = np.empty((), dtype=object)
    out[()] = value
    return out


def build_module(model: Any) -> Any:
    """An nn.Module that computes the ONNX `model`: initializers become buffers, nodes run in order."""
    from onnx import numpy_helper

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    graph = model.graph
    unsupported = sorted({n.op_type for n in graph.node if n.domain not in ("", "ai.onnx") or n.op_type not in OPS})
    if unsupported:
        raise UnsupportedOnnx(
            f"ONNX op{'s' if len(unsupported) > 1 else ''} {', '.join(unsupported)} "
            f"ha{'ve' if len(unsupported) > 1 else 's'} no torch translation in xpubench"
        )
    constants: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    input_names = [i.name for i in graph.input if i.name not in constants]
    steps: list[tuple[Op, Node]] = []
    for proto in _sorted_nodes(graph, set(constants) | set(input_names)):
        node = Node(
            proto.op_type,
            proto.name or proto.output[0],
            tuple(proto.input),
            tuple(proto.output),
            _attributes(proto),
            opset,
        )
        op = OPS[node.op]
        if all(i == "" or i in constants for i in node.inputs):  # fold: it depends on constants only
            try:
                values = _run(op, node, [constants[i] if i else None for i in node.inputs], folding=True)
            except UnsupportedOnnx:
                raise
            except Exception as exc:
                message = f"ONNX node {node.name} ({node.op}) failed on constants: {first_line(exc)}"
                raise UnsupportedOnnx(message) from exc
            constants.update({name: value for name, value in zip(node.outputs, values, strict=False) if name})
            continue
        steps.append((op, node))

    module = _OnnxModule(input_names, [o.name for o in graph.output], steps, constants)
    return module.eval()


def _module_class() -> type:
    import torch

    class OnnxModule(torch.nn.Module):
        """Runs an ONNX graph with torch ops; large float constants are buffers, the rest Python values."""

        def __init__(
            self,
            inputs: list[str],
            outputs: list[str],
            steps: list[tuple[Op, Node]],
            constants: dict[str, np.ndarray],
        ) -> None:
            super().__init__()
            self.onnx_inputs = inputs
            self.onnx_outputs = outputs
            self._steps: list[tuple[Op, Node, list[tuple[str, Any]]]] = []
            buffers: dict[str, str] = {}
            for op, node in steps:
                sources: list[tuple[str, Any]] = []
                for i, name in enumerate(node.inputs):
                    if name == "":
                        sources.append(("none", None))
                    elif name not in constants:
                        sources.append(("env", name))
                    else:
                        value = constants[name]
                        if i in op.host or value.dtype.kind not in "fc" or value.size <= 1:
                            sources.append(("value", value))
                        else:
                            if name not in buffers:
                                buffers[name] = f"c{len(buffers)}_" + re.sub(r"\W", "_", name)[-60:]
                                tensor = torch.from_numpy(np.array(value, order="C", copy=True))
                                self.register_buffer(buffers[name], tensor)
                            sources.append(("buffer", buffers[name]))
                self._steps.append((op, node, sources))
            self._outputs = [("value", constants[o]) if o in constants else ("env", o) for o in outputs]

        def forward(self, *inputs: Any) -> Any:
            env: dict[str, Any] = dict(zip(self.onnx_inputs, inputs, strict=True))
            for op, node, sources in self._steps:
                args = [
                    env[ref] if kind == "env" else getattr(self, ref) if kind == "buffer" else ref
                    for kind, ref in sources
                ]
                try:
                    values = _run(op, node, args, folding=False)
                except UnsupportedOnnx as exc:
                    raise UnsupportedOnnx(f"ONNX node {node.name} ({node.op}): {exc}") from None
                except Exception as exc:
                    raise RuntimeError(f"ONNX node {node.name} ({node.op}): {first_line(exc)}") from exc
                env.update(zip(node.outputs, values, strict=False))
            like = inputs[0] if inputs else None
            outs = [as_tensor(env[ref], like) if kind == "env" else as_tensor(ref, like) for kind, ref in self._outputs]
            outs = [o if isinstance(o, torch.Tensor) else torch.as_tensor(o) for o in outs]
            return outs[0] if len(outs) == 1 else tuple(outs)

    return OnnxModule


def _OnnxModule(*args: Any) -> Any:  # noqa: N802  (builds the class on first use: torch is imported lazily)
    global _ONNX_MODULE_CLASS
    if _ONNX_MODULE_CLASS is None:
        _ONNX_MODULE_CLASS = _module_class()
    return _ONNX_MODULE_CLASS(*args)


_ONNX_MODULE_CLASS: type | None = None
