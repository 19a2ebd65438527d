"""Triton model configurations (its own model_config proto) and `xpubench export triton` repositories."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpubench.serve.policy import BatchingPolicy

if TYPE_CHECKING:
    from xpubench.serve.model import TensorMeta

# (xpubench backend, artifact format) -> Triton's platform, its backend, and the file in the version folder.
LAYOUTS = {
    ("onnxruntime", "onnx"): ("onnxruntime_onnx", None, "model.onnx"),
    ("openvino", "onnx"): (None, "openvino", "model.onnx"),
    ("openvino", "openvino"): (None, "openvino", "model.xml"),
    ("tensorflow", "savedmodel"): ("tensorflow_savedmodel", None, "model.savedmodel"),
}
EXPORTABLE = ("onnxruntime", "openvino", "tensorflow")


def model_config(
    name: str,
    inputs: Sequence[TensorMeta],
    outputs: Sequence[TensorMeta],
    policy: BatchingPolicy,
    instances: int = 1,
    platform: str | None = None,
    backend: str | None = None,
    device: str = "cpu",
    parameters: Mapping[str, str] | None = None,
) -> Any:
    """A tritonclient.grpc.model_config_pb2.ModelConfig. Dims leave out the batch dimension when
    the model batches (max_batch_size > 0), as Triton's do."""
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name=name, max_batch_size=policy.max_batch)
    if platform:
        config.platform = platform
    if backend:
        config.backend = backend
    skip = 1 if policy.batching else 0
    for meta in inputs:
        config.input.add(name=meta.name, data_type=_config_type(meta.datatype), dims=list(meta.shape[skip:]))
    for meta in outputs:
        config.output.add(name=meta.name, data_type=_config_type(meta.datatype), dims=list(meta.shape[skip:]))
    if policy.batching:
        batching = config.dynamic_batching
        batching.preferred_batch_size.extend(policy.preferred)
        batching.max_queue_delay_microseconds = policy.max_queue_delay_us
        queue = batching.default_queue_policy
        queue.max_queue_size = policy.max_queue_size
        queue.default_timeout_microseconds = policy.timeout_us
        queue.timeout_action = mc.ModelQueuePolicy.REJECT
    kind = mc.ModelInstanceGroup.KIND_GPU if device.startswith(("cuda", "gpu")) else mc.ModelInstanceGroup.KIND_CPU
    config.instance_group.add(count=instances, kind=kind)
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    return config


def _config_type(datatype: str) -> int:
    from tritonclient.grpc import model_config_pb2 as mc

    return mc.DataType.Value("TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}")


def config_text(config: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def parse_config(text: str) -> Any:
    """config.pbtxt -> ModelConfig, by Triton's own proto (a field it does not know is an error)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    return text_format.Parse(text, mc.ModelConfig())


def export(
    model: str,
    out: Path,
    backend: str = "onnxruntime",
    precision: str = "fp32",
    policy: BatchingPolicy | None = None,
    instances: int = 1,
    name: str | None = None,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    say: Callable[[str], None] = print,
) -> Path:
    """Write OUT/NAME/config.pbtxt and OUT/NAME/1/<artifact> for the artifact `backend` runs at
    `precision`, read the config back with Triton's proto, and return the model's folder."""
    from xpubench.backends import get_backend
    from xpubench.errors import UsageError
    from xpubench.models import resolve
    from xpubench.models.zoo import lookup
    from xpubench.serve.model import describe, serving_kind

    if backend not in EXPORTABLE:
        raise UsageError(f"Triton runs no artifact of {backend}: choose from {', '.join(EXPORTABLE)}")
    backend_cls = get_backend(backend)
    reason = backend_cls.unavailable_reason(backend_cls.devices[0], precision)
    if reason:
        raise UsageError(reason)
    backend_cls.claim_process(1)
    workload = resolve(model, say=say, shapes=shapes)
    kind = serving_kind(backend_cls, precision, {}, workload)
    fmt = kind.split(":")[0]
    if (backend, fmt) not in LAYOUTS:
        raise UsageError(f"{backend} runs {model} at {precision} from a {fmt} artifact, which Triton's {backend} "
                         "backend does not load")
    artifact = workload.artifact(kind)
    policy = policy or BatchingPolicy()
    opened = backend_cls(artifact, precision=precision)
    try:
        inputs, outputs, fixed = describe(opened, workload, artifact)
    finally:
        opened.close()
    if fixed is not None:
        policy = BatchingPolicy(0, (), 0, policy.max_queue_size, policy.timeout_us)
    name = name or (model if lookup(model) else Path(model).stem)
    platform, triton_backend, file_name = LAYOUTS[(backend, fmt)]
    config = model_config(name, inputs, outputs, policy, instances, platform=platform, backend=triton_backend)
    if (backend, fmt) == ("openvino", "onnx"):  # Triton's openvino backend looks for model.xml unless told
        config.default_model_filename = file_name
    folder = out / name
    version = folder / "1"
    if version.exists():
        shutil.rmtree(version)
    version.mkdir(parents=True)
    _copy_artifact(artifact, fmt, version / file_name)
    text = config_text(config)
    (folder / "config.pbtxt").write_text(text)
    if parse_config((folder / "config.pbtxt").read_text()) != config:
        raise RuntimeError(f"{folder / 'config.pbtxt'} does not read back as written")
    return folder


def _copy_artifact(artifact: Path, fmt: str, target: Path) -> None:
    if artifact.is_dir():
        shutil.copytree(artifact, target)
    elif fmt == "openvino":  # an IR is model.xml beside model.bin
        shutil.copy2(artifact, target)
        shutil.copy2(artifact.with_suffix(".bin"), target.with_suffix(".bin"))
    else:
        shutil.copy2(artifact, target)
