"""Where an ONNX graph can be cut, what each cut carries, and the stage graphs between cuts.

A cut after a node carries every tensor made before it and used after it. The model's own inputs are not
carried: every stage that needs one is fed it from the host. A cut that would carry more than one tensor
crosses a skip connection or a branch: it is refused with the reason, unless the caller lets it carry them all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class Cut:
    """A cut at `tensor`, right after the node that makes it (`position` in the graph's node order)."""

    tensor: str
    position: int
    carried: tuple[str, ...]  # the tensors that cross the cut, `tensor` first
    reason: str | None = None  # why it is refused; None when it is valid

    @property
    def valid(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class GraphFacts:
    """What the cut analysis needs of a graph: node order, producers, last uses, inputs and outputs."""

    nodes: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]  # (label, inputs used, outputs)
    inputs: tuple[str, ...]  # graph inputs that are not initializers
    outputs: tuple[str, ...]

    @classmethod
    def of(cls, model: onnx.ModelProto) -> GraphFacts:
        graph = model.graph
        constants = {i.name for i in graph.initializer}
        nodes = []
        for i, node in enumerate(graph.node):
            used = [t for t in node.input if t]
            used += _captured(node)  # an If/Loop body reads outer tensors by name
            label = f"{node.op_type} {node.name or f'#{i}'}"
            nodes.append((label, tuple(t for t in used if t not in constants), tuple(node.output)))
        inputs = tuple(i.name for i in graph.input if i.name not in constants)
        return cls(tuple(nodes), inputs, tuple(o.name for o in graph.output))

    def producer(self) -> dict[str, int]:
        return {t: i for i, (_, _, outs) in enumerate(self.nodes) for t in outs}

    def live_after(self, position: int) -> list[str]:
        """Tensors made at or before `position` (not the model's inputs) used after it, in the order made."""
        later = {t for _, used, _ in self.nodes[position + 1:] for t in used} | set(self.outputs)
        made = [t for _, _, outs in self.nodes[: position + 1] for t in outs]
        return [t for t in made if t in later]

    def first_use_after(self, tensor: str, position: int) -> str:
        for label, used, _ in self.nodes[position + 1:]:
            if tensor in used:
                return label
        return "the model's outputs"


def _captured(node: onnx.NodeProto) -> list[str]:
    """Names a node's sub-graphs read from the enclosing graph (made neither inside nor as body inputs)."""
    names: list[str] = []
    for attribute in node.attribute:
        for graph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
            inner = {i.name for i in graph.input} | {i.name for i in graph.initializer}
            inner |= {t for n in graph.node for t in n.output}
            for inner_node in graph.node:
                names += [t for t in [*inner_node.input, *_captured(inner_node)] if t and t not in inner]
    return names


def cut_points(model: onnx.ModelProto, carry_skips: bool = False) -> list[Cut]:
    """Every place the graph can be cut (after each node but the last), valid or refused with its reason."""
    facts = GraphFacts.of(model)
    producer = facts.producer()
    cuts = []
    for position, (_, _, outs) in enumerate(facts.nodes[:-1]):
        for tensor in outs:
            if producer.get(tensor) == position and tensor:
                cuts.append(_cut(facts, tensor, position, carry_skips))
    return [c for c in cuts if c.carried or c.reason]


def _cut(facts: GraphFacts, tensor: str, position: int, carry_skips: bool) -> Cut:
    live = facts.live_after(position)
    if tensor not in live:
        return Cut(tensor, position, tuple(live), f"{tensor}: nothing after the cut uses it")
    carried = (tensor, *(t for t in live if t != tensor))
    if len(carried) > 1 and not carry_skips:
        other = carried[1]
        more = f" and {len(carried) - 2} more" if len(carried) > 2 else ""
        return Cut(tensor, position, carried,
                   f"{tensor}: inside a skip connection or branch, the cut would also carry {other}{more} "
                   f"(used by {facts.first_use_after(other, position)}); cut where one tensor crosses")
    return Cut(tensor, position, carried)


def check_cuts(model: onnx.ModelProto, tensors: list[str], carry_skips: bool = False) -> list[Cut]:
    """The named cuts in graph order; ValueError (one line) for a tensor that is no valid cut."""
    facts = GraphFacts.of(model)
    producer = facts.producer()
    cuts = []
    for tensor in tensors:
        if tensor in facts.inputs:
            raise ValueError(f"{tensor} is an input of the model: cut at a tensor a node makes")
        if tensor not in producer:
            raise ValueError(f"{tensor} is no tensor of the model's main graph (a typo, or inside an If/Loop body): "
                             "`xpubench split MODEL --mode pipeline --list-cuts` lists the cuts")
        position = producer[tensor]
        if position == len(facts.nodes) - 1:
            raise ValueError(f"{tensor} is made by the last node: a cut there leaves an empty stage")
        cut = _cut(facts, tensor, position, carry_skips)
        if not cut.valid:
            raise ValueError(cut.reason)
        cuts.append(cut)
    cuts.sort(key=lambda c: c.position)
    for a, b in zip(cuts, cuts[1:], strict=False):
        if a.position == b.position:
            raise ValueError(f"{a.tensor} and {b.tensor} are made by the same node: a stage between them is empty")
    return cuts


@dataclass(frozen=True)
class Stage:
    """The graph between two cuts: the ONNX file, the tensors it takes (carried in, or the model's inputs
    fed from the host) and gives."""

    index: int
    path: Path
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    first: int  # node positions, inclusive
    last: int


def extract_stages(model_path: Path, cuts: list[Cut], folder: Path) -> list[Stage]:
    """One ONNX file per stage (onnx.utils.extract_model), cached in `folder` by the model's bytes and cuts."""
    import onnx
    import onnx.utils

    model = onnx.load(str(model_path), load_external_data=False)
    facts = GraphFacts.of(model)
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()[:12]
    bounds = [-1, *(c.position for c in cuts), len(facts.nodes) - 1]
    stages = []
    for index, (after, last) in enumerate(zip(bounds, bounds[1:], strict=False)):
        carried_in = cuts[index - 1].carried if index else ()
        used = {t for _, ins, _ in facts.nodes[after + 1: last + 1] for t in ins}
        from_host = tuple(t for t in facts.inputs if t in used and t not in carried_in)
        inputs = (*carried_in, *from_host)
        outputs = cuts[index].carried if index < len(cuts) else facts.outputs
        key = hashlib.sha256(f"{digest}{inputs}{outputs}".encode()).hexdigest()[:16]
        path = folder / f"stage-{key}.onnx"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            staged = path.with_name(f".{path.name}.tmp")
            onnx.utils.extract_model(str(model_path), str(staged), list(inputs), list(outputs))
            staged.replace(path)
        stages.append(Stage(index, path, inputs, tuple(outputs), after + 1, last))
    return stages
