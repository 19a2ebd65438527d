"""`xpubench.benchmark()`: the sweep from Python, for a zoo name, a model file or a PyTorch module."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xpubench.paths import DEFAULT_RESULTS, cache_dir

if TYPE_CHECKING:
    from xpubench.data.files import DataFile


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
    batch_axes: Mapping[str, int | None] | None = None,
    inputs: Mapping[str, float | int | str | Path] | None = None,
    int_ranges: Mapping[str, tuple[int, int]] | None = None,
    results: str | Path = DEFAULT_RESULTS,
    scenarios: Sequence[str] = ("single-stream",),
    qps: float | None = None,
    bound_ms: float | None = None,
    timings: Sequence[str] = ("end-to-end",),
    repeats: int | None = None,
    cluster: str | None = None,
    **measure: Any,
) -> list[dict[str, Any]]:
    """Measure `model` and return the cell records (as `xpubench run --json` writes them).

    `model` is a zoo name, a path to a .onnx/.tflite/.keras/.pt2 file or SavedModel folder, or a
    `torch.nn.Module`, which is exported with `torch.export` on `example_inputs` (axis 0 is the
    batch). `data` is a .npz, HDF5 or ROOT file whose arrays are named x and y, or a
    `DataFile(path, x=..., y=...)` naming them, or an .npz with one array per input, named as the inputs.
    Per input name, as --shape, --batch-axis, --input and --int-range: `shapes` one sample's shape, `batch_axes`
    the axis that holds the batch (None: fed the same in every call), `inputs` a number or a .npy file fed in
    every call, `int_ranges` (LOW, HIGH) for random integers. `scenarios` are the load scenarios, as
    `xpubench run --scenario` names them (single-stream, batch-sweep, offline, server, mlperf-*), with
    `qps` and `bound_ms` as --qps and --bound-ms. `timings` are end-to-end and/or compute, as --timing;
    `repeats` the worker sessions per cell, as --repeats. `measure` takes MeasureConfig's fields (min_runs,
    min_time_s, ...) and `cell_timeout_s`. The run is stored in `results` like any other. Each cell
    runs in a worker process of its own (a torch module reaches it as its exported .pt2 file); with
    `cluster` (a Dask scheduler's address, or "local:N") on that cluster's workers, as `--cluster`.
    """
    from xpubench.backends import backend_names
    from xpubench.core.measure import MeasureConfig
    from xpubench.data.files import DataFile
    from xpubench.run.limits import DEFAULT_CELL_TIMEOUT_S
    from xpubench.run.matrix import Matrix
    from xpubench.run.session import EXIT_INTERRUPTED, Session
    from xpubench.scenarios import DEFAULT_BOUND_MS, ScenarioConfig

    cell_timeout_s = float(measure.pop("cell_timeout_s", DEFAULT_CELL_TIMEOUT_S))
    name = _model_name(model, example_inputs)
    if data is not None and not isinstance(data, DataFile):
        data = DataFile(Path(data))
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
        data=data,
        shapes=tuple(sorted((k, tuple(v)) for k, v in (shapes or {}).items())),
        batch_axes=tuple(sorted((batch_axes or {}).items())),
        input_values=tuple(sorted((k, str(v)) for k, v in (inputs or {}).items())),
        int_ranges=tuple(sorted((k, (int(v[0]), int(v[1]))) for k, v in (int_ranges or {}).items())),
        scenarios=(scenarios,) if isinstance(scenarios, str) else tuple(scenarios),
        scenario=ScenarioConfig(qps=qps, bound_ms=DEFAULT_BOUND_MS if bound_ms is None else bound_ms),
        timings=(timings,) if isinstance(timings, str) else tuple(timings),
        **({"repeats": repeats} if repeats is not None else {}),
    )
    matrix.check_choices()  # an unknown backend or precision raises before anything is stored
    # A bad model or data file raises before the run is stored.
    with contextlib.ExitStack() as stack:
        launcher = None
        if cluster is not None:
            from xpubench.cluster import connect

            launcher = stack.enter_context(connect(cluster))
        session = stack.enter_context(Session.start(results, [matrix], f"xpubench.benchmark({name!r})",
                                                    cell_timeout_s=cell_timeout_s, launcher=launcher))
        ending = session.measure()
        # Stopped by Ctrl-C or SIGTERM: what is stored stays stored, and the caller stops too. A finished run
        # returns its records whatever their statuses: the caller reads them (the CLI's exit code says it).
        if ending.exit_code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        if ending.status == "interrupted":
            raise SystemExit(ending.exit_code)
        return session.store.cells(ending.run_id)


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


def load_results(path: str | Path = DEFAULT_RESULTS, run_id: str | Sequence[str] | None = None) -> Any:
    """The stored cells as a pandas DataFrame, one row per cell (every run, or `run_id`: one id or a list).

    `path` is a results folder (`xpubench run --results DIR`) or its `xpubench.db`. Nested record
    fields are flattened with dots, so each column names its place in the JSON record
    (`xpubench show --format json`). The columns, always present in this order:

    - run_id, run_started_at: the run and when it started (UTC, ISO 8601);
    - key, status (ok | unavailable | failed), reason, model, dataset, backend, options (`k=v,...`),
      label (backend[options]), device, precision, batch_size, threads, scenario, timing;
    - latency_ms.median, .p90, .p99, .mean, .stdev, .min, .max, .ci95_low, .ci95_high: per call
      (one batch), in ms; per_sample_ms (median / batch), throughput_sps (samples/s), runs,
      duration_s, first_inference_ms, stable, warnings (`; `-joined), stop_reason;
    - accuracy.metric, accuracy.value, accuracy_delta (minus the float32 reference's);
    - fidelity.max_abs, fidelity.mean_abs, fidelity.top1_agreement, fidelity.reference;
    - delegated_fraction, emulated, model_bytes, artifact;
    - energy.k_w_ms (K-function, W*ms), energy.tdp_w, energy.source, energy_mj (per inference:
      the meter's when measured, else K);
    - price.usd_per_million, price.basis, roofline.flops, roofline.gflops, roofline.peak_fraction,
      roofline.peak_under_load, scenario_result.verdict: empty where not recorded;
    - details: backend-specific details as JSON text.

    Fields a record has beyond these follow as further columns, named the same way.
    `xpubench.report.frame.COLUMNS` describes each column. Raw call times are not in the frame.
    """
    from xpubench.report.frame import load

    return load(path, run_id)
