"""`xpubench export triton`: a Triton model repository of the converted artifacts, each with its config.pbtxt."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from xpubench.serve.config import config_text, model_config, parse_config
from xpubench.serve.policy import BatchingPolicy

# (xpubench backend, artifact format) -> Triton's platform, its backend, and the file in the version folder.
LAYOUTS = {
    ("onnxruntime", "onnx"): ("onnxruntime_onnx", None, "model.onnx"),
    ("openvino", "onnx"): (None, "openvino", "model.onnx"),
    ("openvino", "openvino"): (None, "openvino", "model.xml"),
    ("tensorflow", "savedmodel"): ("tensorflow_savedmodel", None, "model.savedmodel"),
}
EXPORTABLE = ("onnxruntime", "openvino", "tensorflow")


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
