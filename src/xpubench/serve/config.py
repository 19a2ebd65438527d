"""Triton's model configuration of a served or exported model, built and read with Triton's own model-config
proto (tritonclient.grpc.model_config_pb2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from xpubench.serve.policy import BatchingPolicy

if TYPE_CHECKING:
    from xpubench.serve.model import TensorMeta


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
