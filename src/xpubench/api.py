"""`xpubench.benchmark()`: the sweep from Python, for a zoo name, a model file or a PyTorch module."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xpubench.data.files import DataFile
from xpubench.paths import DEFAULT_RESULTS, cache_dir


def benchmark(
    model: Any,
    backends: Sequence[str] = ("onnxruntime", "litert"),
    precisions: Sequence[str] = ("fp32",),
    batch_sizes: Sequence[int] = (1, 32),
    threads: Sequence[int] = (1,),
    devices: Sequence[str] | None = None,
    example_inputs: Sequence[Any] | None = None,
    data: str | Path | DataFile | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    results: str | Path = DEFAULT_RESULTS,
    **measure: Any,
) -> list[dict[str, Any]]:
    """Measure `model` and return the cell records (as `xpubench run --json` writes them).

    `model` is a zoo name, a path to a .onnx/.tflite/.keras/.pt2 file or SavedModel folder, or a
    `torch.nn.Module`, which is exported with `torch.export` on `example_inputs` (axis 0 is the
    batch). `data` is a .npz, HDF5 or ROOT file whose arrays are named x and y, or a
    `DataFile(path, x=..., y=...)` naming them. `measure` takes MeasureConfig's fields (min_runs,
    min_time_s, ...). The run is stored in `results` like any other.
    """
    from xpubench.backends import backend_names
    from xpubench.core.measure import MeasureConfig
    from xpubench.models import resolve
    from xpubench.store import ResultStore
    from xpubench.store.environment import collect
    from xpubench.sweep import Matrix, run_matrix

    name = _model_name(model, example_inputs)
    shapes = {k: tuple(v) for k, v in (shapes or {}).items()}
    if data is not None and not isinstance(data, DataFile):
        data = DataFile(Path(data))
    workload = resolve(name, say=lambda _m: None, data=data, shapes=shapes)
    everything = tuple(backends) == ("all",)
    matrix = Matrix(
        models=(name,),
        backends=tuple(backend_names()) if everything else tuple(backends),
        batch_sizes=tuple(batch_sizes),
        threads=tuple(threads),
        precisions=tuple(precisions),
        devices=tuple(devices) if devices else (("all",) if everything else None),
        every_option=everything,
        measure=MeasureConfig(**measure),
    )
    store = ResultStore(results)
    try:
        run_id = store.start_run(collect(list(threads)), command=f"xpubench.benchmark({name!r})")
        try:
            run_matrix(matrix, store, run_id, workloads={name: workload})
        finally:
            from xpubench.hardware.host import load_average

            store.finish_run(run_id, "finished", load_average())
        return store.cells(run_id)
    finally:
        store.close()


def _model_name(model: Any, example_inputs: Sequence[Any] | None) -> str:
    """A zoo name or path as given; a torch module exported once to a .pt2 named by its content."""
    if isinstance(model, str | Path):
        return str(model)
    if type(model).__module__.startswith("torch") or hasattr(model, "state_dict"):
        if example_inputs is None:
            raise ValueError("a torch module needs example_inputs (one tensor per forward argument, batch first)")
        from xpubench.convert.torch import module_to_pt2

        folder = cache_dir() / "artifacts"
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            staged = module_to_pt2(model, example_inputs, Path(tmp) / "module.pt2")
            digest = hashlib.sha256(staged.read_bytes()).hexdigest()[:16]
            out = folder / f"{type(model).__name__}-{digest}.pt2"
            staged.replace(out)
        return str(out)
    raise TypeError(f"cannot benchmark a {type(model).__name__}: give a zoo name, a model file or a torch module")
