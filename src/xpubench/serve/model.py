"""The hosted model: its runtime instances behind the dynamic batcher, its metadata and statistics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xpubench.serve.batcher import DynamicBatcher, Request
from xpubench.serve.errors import InvalidInput, QueueFull, ServeError
from xpubench.serve.instances import ModelInstance
from xpubench.serve.policy import BatchingPolicy
from xpubench.serve.stats import ModelStats
from xpubench.serve.tensors import datatype_name

if TYPE_CHECKING:
    from xpubench.backends.base import Backend
    from xpubench.models import Workload

VERSION = "1"
# Triton's platform names for the runtimes it also has; the others are named by themselves.
TRITON_PLATFORMS = {"onnxruntime": "onnxruntime_onnx", "openvino": "openvino", "tensorflow": "tensorflow_savedmodel",
                    "litert": "tflite", "torch": "pytorch_libtorch"}


@dataclass(frozen=True)
class TensorMeta:
    """A tensor as the protocol describes it: -1 for a dimension of any size (the batch first,
    when the model batches)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_dict(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ServeSpec:
    """What `xpubench serve` hosts and how."""

    model: str
    backend: str = "onnxruntime"
    options: Mapping[str, str] = field(default_factory=dict)
    precision: str = "fp32"
    device: str | None = None  # the backend's first
    threads: int = 1
    instances: int = 1
    policy: BatchingPolicy = field(default_factory=BatchingPolicy)
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    name: str | None = None  # the zoo name or the file's stem

    def __post_init__(self) -> None:
        if self.threads < 1 or self.instances < 1:
            raise ValueError("threads and instances must be >= 1")


class HostedModel:
    """K instances of one model behind one dynamic batcher. The transports call submit()."""

    def __init__(self, name: str, spec: ServeSpec, kind: str, backends: list[Backend],
                 inputs: list[TensorMeta], outputs: list[TensorMeta], policy: BatchingPolicy) -> None:
        self.name = name
        self.version = VERSION
        self.spec = spec
        self.kind = kind  # the artifact kind served, e.g. onnx:fp32
        self.inputs = inputs
        self.outputs = outputs
        self.policy = policy
        self.platform = TRITON_PLATFORMS.get(spec.backend, spec.backend)
        self.stats = ModelStats(name, VERSION)
        self.scheduler = DynamicBatcher(policy, on_rejected=self._rejected)
        self.instances = [ModelInstance(i, b, self.scheduler, self.stats) for i, b in enumerate(backends)]
        self.ready = False
        self._closed = False
        for instance in self.instances:
            instance.start()

    def metadata(self) -> dict:
        """The protocol's model metadata."""
        return {"name": self.name, "versions": [self.version], "platform": self.platform,
                "inputs": [t.as_dict() for t in self.inputs], "outputs": [t.as_dict() for t in self.outputs]}

    def config(self):
        """Triton's ModelConfig proto of what is served."""
        from xpubench.serve.config import model_config

        return model_config(
            self.name, self.inputs, self.outputs, self.policy, len(self.instances),
            platform=self.platform, device=self.spec.device or "cpu",
            parameters={"xpubench_backend": self.spec.backend, "xpubench_artifact": self.kind,
                        "xpubench_device": self.spec.device or "cpu", "xpubench_threads": str(self.spec.threads),
                        **{f"xpubench_option_{k}": v for k, v in self.spec.options.items()}},
        )

    def submit(self, tensors: Mapping[str, np.ndarray], done: Callable, timeout_us: int = 0) -> None:
        """Check the request's tensors against the model and queue it; raises ServeError at once
        (bad input, queue full, shutting down), else `done(outputs, error)` is called later."""
        arrays = self.check(tensors)
        try:
            self.scheduler.submit(Request(arrays, done, timeout_us))
        except QueueFull:
            self.stats.request_failed(0)  # Triton counts a rejected request as failed
            raise

    async def infer(self, tensors: Mapping[str, np.ndarray], timeout_us: int = 0) -> list[np.ndarray]:
        """The outputs for one request, awaited on the calling event loop while an instance runs it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def done(outputs: list[np.ndarray] | None, error: ServeError | None) -> None:
            loop.call_soon_threadsafe(_settle, future, outputs, error)

        self.submit(tensors, done, timeout_us)
        return await future

    def check(self, tensors: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """The request's tensors in the model's input order, checked for names, types and shapes."""
        unknown = set(tensors) - {t.name for t in self.inputs}
        if unknown:
            raise InvalidInput(f"unexpected input {sorted(unknown)[0]!r}: model {self.name} takes "
                               f"{', '.join(t.name for t in self.inputs)}")
        arrays = []
        for meta in self.inputs:
            if meta.name not in tensors:
                raise InvalidInput(f"missing input {meta.name!r} for model {self.name}")
            array = tensors[meta.name]
            if datatype_name(array.dtype) != meta.datatype:
                raise InvalidInput(f"input {meta.name!r} is {datatype_name(array.dtype)}; the model takes "
                                   f"{meta.datatype}")
            if array.ndim != len(meta.shape) or any(
                want != -1 and have != want for have, want in zip(array.shape, meta.shape, strict=True)
            ):
                raise InvalidInput(f"input {meta.name!r} has shape {list(array.shape)}; the model takes "
                                   f"{list(meta.shape)}")
            arrays.append(array)
        if self.policy.batching:
            sizes = {a.shape[0] for a in arrays}
            if len(sizes) > 1:
                raise InvalidInput(f"the inputs' batch sizes differ: {sorted(sizes)}")
            size = sizes.pop()
            if not 1 <= size <= self.policy.max_batch:
                raise InvalidInput(f"batch size {size} is outside 1..{self.policy.max_batch} "
                                   f"(the server's --max-batch)")
        return arrays

    def close(self, timeout_s: float = 60.0) -> None:
        """Take nothing new, run what is queued, stop the instances and free the runtimes (once)."""
        self.ready = False
        if self._closed:
            return
        self._closed = True
        self.scheduler.close()
        for instance in self.instances:
            instance.join(timeout_s)
        for instance in self.instances:
            instance.backend.close()

    def _rejected(self, request: Request, error: ServeError) -> None:
        self.stats.request_failed(time.monotonic_ns() - request.arrived_ns)


def _settle(future: asyncio.Future, outputs: list[np.ndarray] | None, error: ServeError | None) -> None:
    if future.done():  # the client went away
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(outputs)


def load(spec: ServeSpec, say: Callable[[str], None] = print) -> HostedModel:
    """Resolve the model as a sweep does, open one backend per instance and warm each up."""
    from xpubench.backends import get_backend
    from xpubench.errors import UsageError
    from xpubench.models import resolve
    from xpubench.models.zoo import lookup

    try:
        backend_cls = get_backend(spec.backend)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    device = spec.device or backend_cls.devices[0]
    try:
        options = backend_cls.resolve_options(spec.options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    reason = backend_cls.unavailable_reason(device, spec.precision, options)
    if reason:
        raise UsageError(reason)
    # Runtimes whose process-wide thread pools are fixed at start-up (TensorFlow) are set before
    # anything, converters and zoo training included, starts them.
    backend_cls.claim_process(spec.threads)
    workload = resolve(spec.model, say=say, shapes=spec.shapes)
    kind = serving_kind(backend_cls, spec.precision, options, workload)
    artifact = workload.artifact(kind)
    backends = []
    try:
        for _ in range(spec.instances):
            backends.append(backend_cls(artifact, device=device, threads=spec.threads, precision=spec.precision,
                                        options=options))
        inputs, outputs, fixed = describe(backends[0], workload, artifact)
        for backend in backends[1:]:  # each instance warmed up before the first request
            backend.predict(warmup_inputs(workload, fixed))
    except BaseException:
        for backend in backends:
            backend.close()
        raise
    policy = spec.policy if fixed is None else BatchingPolicy(
        0, (), 0, spec.policy.max_queue_size, spec.policy.timeout_us)
    name = spec.name or (spec.model if lookup(spec.model) else Path(spec.model).stem)
    return HostedModel(name, replace(spec, device=device, options=dict(options)), kind, backends, inputs, outputs,
                       policy)


def warmup_inputs(workload: Workload, fixed: int | None) -> list[np.ndarray]:
    return [a[: fixed or 1] for a in workload.fidelity_inputs()]


def describe(
    backend: Backend, workload: Workload, artifact: Path
) -> tuple[list[TensorMeta], list[TensorMeta], int | None]:
    """The model's inputs and outputs as the protocol states them, from one warm-up call, and its
    fixed batch size (None: any batch). Inputs take the data types `prepare` takes (the source's)."""
    from xpubench.models import apply_shape

    specs = [apply_shape(s, workload.shapes) for s in backend.inputs]
    fixed = specs[0].fixed_batch if specs else None
    sample = warmup_inputs(workload, fixed)
    results = [np.asarray(o) for o in backend.predict(sample)]

    def shape(full: tuple) -> tuple[int, ...]:
        dims = tuple(-1 if d is None else int(d) for d in full)
        return dims if fixed is not None else (-1, *dims[1:])

    inputs = [TensorMeta(s.name, datatype_name(a.dtype), shape(s.shape)) for s, a in zip(specs, sample, strict=True)]
    names = output_names(artifact, len(results))
    outputs = [TensorMeta(n, datatype_name(o.dtype), shape(o.shape)) for n, o in zip(names, results, strict=True)]
    return inputs, outputs, fixed


def serving_kind(backend_cls: type[Backend], precision: str, options: Mapping[str, str], workload: Workload) -> str:
    """The artifact kind the backend runs, chosen as a sweep chooses it (its first reachable kind)."""
    from xpubench.core.cell import Cell
    from xpubench.errors import UsageError
    from xpubench.run.feasibility import artifact_kind

    cell = Cell(workload.name, backend_cls.name, precision=precision, options=tuple(sorted(options.items())))
    kind, reason = artifact_kind(backend_cls, cell, workload)
    if kind is None:
        raise UsageError(f"{backend_cls.name} cannot run {workload.name} at {precision}: {reason}")
    return kind


def output_names(artifact: Path, count: int) -> list[str]:
    """The graph's own output names where the artifact is an ONNX file; output0.. otherwise."""
    if artifact.suffix == ".onnx":
        import onnx

        graph = onnx.load(str(artifact), load_external_data=False).graph
        names = [o.name for o in graph.output]
        if len(names) == count:
            return names
    return [f"output{i}" for i in range(count)]
