"""The float32 reference outputs every variant is compared with: the source model run by its own runtime,
cached on disk next to the model's artifacts."""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from xpubench.backends import get_backend
from xpubench.errors import one_line
from xpubench.models import REFERENCE_BACKEND, Workload
from xpubench.paths import content_digest
from xpubench.run.cell_runner import predict_all


def reference_outputs(workload: Workload, threads: int = 1) -> tuple[list[np.ndarray], str]:
    """The source model's own outputs on the fidelity inputs, from its own runtime."""
    name = REFERENCE_BACKEND[workload.source_format]
    backend_cls = get_backend(name)
    reason = backend_cls.unavailable_reason(backend_cls.devices[0], "fp32")
    if reason:
        raise RuntimeError(reason)
    backend = backend_cls(workload.artifacts.sources[workload.source_kind], threads=threads)
    try:
        # At the batch the model takes: one it is fixed at, else 64 samples a call.
        fixed = workload.fixed_batch(workload.shaped(backend.inputs))
        outputs = predict_all(backend, workload.fidelity_inputs(), fixed or 64, workload.input_axes)
    finally:
        backend.close()
    return outputs, f"{name} {workload.source_kind}"


def cached_reference(workload: Workload) -> tuple[Workload, Path | None, str | None]:
    """The workload with its reference attached, and the reference's .npz, keyed by the source artifact's
    content and the fidelity inputs (computed when missing); (workload without one, None, why) when it
    cannot be had."""
    key = hashlib.sha256(content_digest(workload.artifacts.sources[workload.source_kind]).encode())
    for array in workload.fidelity_inputs():
        key.update(f"{array.shape}{array.dtype}".encode())
        key.update(np.ascontiguousarray(array).tobytes())
    path = workload.artifacts.folder / f"reference-{key.hexdigest()[:16]}.npz"
    if path.exists():
        with contextlib.suppress(Exception):  # a damaged cache file is computed again
            return replace(workload, reference=load_reference(path)), path, None
    try:
        outputs, name = reference_outputs(workload, 1)
    except Exception as exc:  # fidelity is then unknown; the cells are still measured
        return replace(workload, reference=()), None, one_line(exc)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(f".{path.name}.{os.getpid()}.npz")
    np.savez(staged, name=np.array(name), **{f"out{i}": np.asarray(o) for i, o in enumerate(outputs)})
    staged.replace(path)
    return replace(workload, reference=(outputs, name)), path, None


def load_reference(path: Path) -> tuple[list[Any], str]:
    with np.load(path, allow_pickle=False) as stored:
        count = sum(1 for k in stored.files if k.startswith("out"))
        return [stored[f"out{i}"] for i in range(count)], str(stored["name"])
