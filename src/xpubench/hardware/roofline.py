"""Roofline figures: FLOPs and bytes per inference counted from an ONNX graph, and this CPU's matmul peak.

The count (per batch, then divided by the batch size):
- MatMul, Gemm, Conv, ConvTranspose and their integer/QLinear forms: 2 per multiply-accumulate,
  plus 1 per output element for a bias (Gemm's C, Conv's B);
- elementwise ops (Add, Mul, Relu, Sigmoid, Exp, Clip, ...): 1 per output element, whatever the
  function costs in instructions;
- MaxPool/AveragePool: the window size per output element; global pools, reductions: 1 per input
  element; BatchNormalization: 2 per element (scale and shift); Softmax/LogSoftmax: 3 per element
  (exp, sum, divide); LayerNormalization/InstanceNormalization: 5 per element;
  QuantizeLinear/DequantizeLinear: 2 per element;
- shape and data-movement ops (Reshape, Transpose, Concat, Gather, ...): none.
Bytes: every weight (initializer, Constant) read once per batch, plus every node's activation
inputs read and outputs written at their element size, as if nothing stayed in cache between nodes;
views (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout) and shape arithmetic move nothing.
So bytes are an upper bound of the traffic and the intensity a lower bound. Weights per inference
shrink with the batch, which is the roofline's point.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

ELEMENTWISE = frozenset(
    "Add Sub Mul Div Pow Sqrt Reciprocal Neg Abs Exp Log Relu LeakyRelu PRelu Elu Selu Celu Gelu Sigmoid "
    "HardSigmoid HardSwish Tanh Softplus Softsign Erf Clip Max Min Sum Mean Where Mish Sin Cos Floor Ceil "
    "Round Sign ThresholdedRelu".split()
)
REDUCTIONS = frozenset(
    "ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceSumSquare ReduceLogSumExp "
    "GlobalAveragePool GlobalMaxPool".split()
)
MOVES_NOTHING = frozenset("Reshape Flatten Squeeze Unsqueeze Identity Dropout Shape Size Constant".split())
# Where the weight (second operand) sits among a matrix op's inputs.
_MATMUL_B = {"MatMul": 1, "Gemm": 1, "MatMulInteger": 1, "QLinearMatMul": 3}
_CONV_W = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_CONV_BIAS = {"Conv": 2, "QLinearConv": 8}
PER_ELEMENT = {
    "BatchNormalization": 2,
    "Softmax": 3,
    "LogSoftmax": 3,
    "LayerNormalization": 5,
    "InstanceNormalization": 5,
    "QuantizeLinear": 2,
    "DequantizeLinear": 2,
}


def _fix_batch(model: Any, batch: int, shapes: dict[str, tuple[int, ...]] | None) -> int:
    """Set every graph input's leading dynamic dimension to `batch` (and other dynamic ones from
    `shapes`); returns the batch the graph now runs, which is the model's own where it fixes one."""
    initializers = {i.name for i in model.graph.initializer}
    ran = batch
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        given = (shapes or {}).get(value.name) or (shapes or {}).get("")
        for i, dim in enumerate(dims):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                if i == 0:
                    ran = dim.dim_value
                continue
            if i == 0:
                dim.dim_value = batch
            elif given and len(given) == len(dims) - 1:
                dim.dim_value = given[i - 1]
            else:
                raise ValueError(f"input {value.name!r} has a dynamic dimension {i}: give its shape")
    return ran


def _elements(shape: tuple[int, ...] | None) -> int:
    return math.prod(shape) if shape is not None else 0


def count(onnx_path: Path | str, batch: int = 1, shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """FLOPs and bytes per inference of the ONNX model at this batch size (see the module's count).

    Kept per artifact (its path, size and modification time), batch and shapes in the cache folder,
    so a sweep's workers (a process per cell) count each graph once.
    """
    path = Path(onnx_path)
    stat = path.stat()
    frozen = tuple(sorted((shapes or {}).items()))
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|b{batch}|{frozen}"
    known = _read_json(_counts_file())
    if isinstance(known.get(key), dict):
        return dict(known[key])
    found = dict(_count(str(path.resolve()), stat.st_mtime_ns, batch, frozen))
    _write_json(_counts_file(), {**_read_json(_counts_file()), key: found})
    return found


def _counts_file() -> Path:
    from xpubench.paths import cache_dir

    return cache_dir() / "roofline-counts.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically; a cache that cannot be written only costs time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        staged.write_text(json.dumps(data, indent=1))
        staged.replace(path)
    except OSError:
        pass


@lru_cache(maxsize=64)
def _count(path: str, _mtime: int, batch: int, shapes: tuple) -> dict[str, Any]:
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(path)
    ran = _fix_batch(model, batch, dict(shapes))
    # data_prop follows shape arithmetic (Shape -> Gather -> Concat -> Reshape) with the batch fixed.
    model = shape_inference.infer_shapes(model, data_prop=True)
    graph = model.graph
    info: dict[str, tuple[tuple[int, ...] | None, int]] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        t = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
        shape = None if not t.HasField("shape") or any(d < 0 for d in dims) else dims
        info[value.name] = (shape, _itemsize(t.elem_type))
    weights: dict[str, tuple[tuple[int, ...], int]] = {}
    for init in graph.initializer:
        array = numpy_helper.to_array(init)
        weights[init.name] = (tuple(array.shape), array.itemsize)
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            array = numpy_helper.to_array(node.attribute[0].t)
            weights[node.output[0]] = (tuple(array.shape), array.itemsize)

    def shape(name: str) -> tuple[int, ...] | None:
        if name in weights:
            return weights[name][0]
        return info.get(name, (None, 4))[0]

    flops = 0
    activation_bytes = 0
    unknown: set[str] = set()
    for node in graph.node:
        op = node.op_type
        out = shape(node.output[0]) if node.output else None
        if out is None and op not in MOVES_NOTHING:
            unknown.add(op)
            continue
        n_out = _elements(out)
        if op in _MATMUL_B:
            a = shape(node.input[0])
            if a is None:
                unknown.add(op)
                continue
            k = a[0] if op == "Gemm" and _attribute(node, "transA", 0) else a[-1]
            flops += 2 * n_out * k
            if op == "Gemm" and len(node.input) > 2 and node.input[2]:
                flops += n_out
        elif op in _CONV_W:
            w = shape(node.input[_CONV_W[op]])
            if w is None:
                unknown.add(op)
                continue
            flops += 2 * n_out * math.prod(w[1:])  # w: (Cout, Cin / group, *kernel)
            bias = _CONV_BIAS.get(op)
            if bias is not None and len(node.input) > bias and node.input[bias]:
                flops += n_out
        elif op == "ConvTranspose":
            x, w = shape(node.input[0]), shape(node.input[1])
            if x is None or w is None:
                unknown.add(op)
                continue
            # w: (Cin, Cout / group, *kernel): every input element meets Cout/group x kernel weights.
            flops += 2 * _elements(x) * math.prod(w[1:])
            if len(node.input) > 2 and node.input[2]:
                flops += n_out
        elif op in ("MaxPool", "AveragePool", "LpPool"):
            flops += n_out * math.prod(_attribute(node, "kernel_shape", [1]))
        elif op in REDUCTIONS:
            flops += _elements(shape(node.input[0]))
        elif op in ELEMENTWISE:
            flops += n_out
        elif op in PER_ELEMENT:
            flops += PER_ELEMENT[op] * n_out
        if op in MOVES_NOTHING:
            continue
        for name in (*node.input, *node.output):
            if name and name not in weights:
                tensor_shape, itemsize = info.get(name, (None, 4))
                activation_bytes += _elements(tensor_shape) * itemsize
    weight_bytes = sum(math.prod(s) * size for s, size in weights.values())
    total_bytes = weight_bytes + activation_bytes
    return {
        "flops": flops / ran,
        "bytes": total_bytes / ran,
        "weight_bytes": weight_bytes,
        "intensity": flops / total_bytes if total_bytes else None,
        "batch": ran,
        "uncounted_ops": sorted(unknown),
    }


def _attribute(node: Any, name: str, default: Any) -> Any:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _itemsize(elem_type: int) -> int:
    from onnx import helper

    try:
        import numpy as np

        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return 4


# -- the peak ------------------------------------------------------------------------------------

_PROBE = r"""
import sys, time, numpy as np
best, wall, cpu = 0.0, 0.0, 0.0
for n in (512, 1024, 2048):
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    c = np.empty_like(a)
    np.matmul(a, b, out=c)
    spent, reps = 0.0, 0
    while reps < 3 or (reps < 10 and spent < 0.5):
        t, p = time.perf_counter(), time.process_time()
        np.matmul(a, b, out=c)
        dt = time.perf_counter() - t
        cpu += time.process_time() - p
        spent += dt; wall += dt; reps += 1
        best = max(best, 2 * n**3 / dt / 1e9)
print(best, cpu / wall)
"""

# The probe's threads got less than this share of their cores' time (other processes had the rest, or
# the hypervisor did): its peak was measured under load, too low, so every fraction of it is too high.
# Such a peak is measured again once it is REPROBE_AFTER_S old.
UNDER_LOAD_SHARE = 0.9
REPROBE_AFTER_S = 600.0


def _measure_peak(threads: int) -> tuple[float, float]:
    """Best GFLOP/s of a numpy float32 matmul (square sides 512 to 2048) with `threads` BLAS threads,
    in a fresh process so its thread count is its own; and the share of `threads` cores' time its
    timed matmuls got (CPU time / wall time / threads)."""
    env = {**os.environ}
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        env[name] = str(threads)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300, check=True
    )
    gflops, cores = (float(v) for v in out.stdout.strip().splitlines()[-1].split())
    return gflops, min(1.0, cores / threads)


def peak(threads: int = 1) -> dict[str, Any]:
    """This CPU's float32 matmul peak at `threads` threads: {"gflops", "cpu_share", "under_load",
    "measured_at"}, cached in the cache folder (keyed by the CPU model and the thread count).

    A peak whose probe got less than UNDER_LOAD_SHARE of its cores is kept, marked `under_load`, and
    measured again once it is REPROBE_AFTER_S old; the higher figure stays, and a probe that had its
    cores replaces it."""
    from xpubench.hardware import host
    from xpubench.paths import cache_dir

    threads = max(1, min(threads, host.logical_cpus()))
    path = cache_dir() / "roofline-peak.json"
    key = f"{host.cpu_model()}|threads={threads}"
    known = _read_json(path).get(key)
    if not (isinstance(known, dict) and {"gflops", "under_load", "measured_at"} <= known.keys()):
        known = None  # none yet, or written by an older version
    elif not known["under_load"] or time.time() - known["measured_at"] < REPROBE_AFTER_S:
        return known
    gflops, share = _measure_peak(threads)
    found = {"gflops": gflops, "cpu_share": share, "under_load": share < UNDER_LOAD_SHARE, "measured_at": time.time()}
    if found["under_load"] and known and known["gflops"] > gflops:
        found["gflops"] = known["gflops"]  # a peak is the best seen
    _write_json(path, {**_read_json(path), key: found})
    return found


def for_cell(
    onnx_path: Path | str,
    batch: int,
    per_sample_ms: float | None,
    threads: int = 1,
    device: str = "cpu",
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, Any]:
    """The cell's `roofline` record: flops, bytes and intensity per inference, achieved GFLOP/s and, on
    the CPU, the fraction of the matmul peak at the cell's thread count (`peak_under_load`: that peak
    was measured while other work ran, so the fraction is too high; see `peak`). Where the graph cannot be
    counted (a dynamic dimension with no shape given, a graph onnx cannot read) the record is
    {"error": one line}."""
    try:
        counted = count(onnx_path, batch, shapes)
    except Exception as exc:  # onnx raises its own types; a graph we cannot count must not fail the cell
        text = str(exc).strip().splitlines()
        return {"error": f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")}
    found = {k: counted[k] for k in ("flops", "bytes", "intensity")}
    gflops = counted["flops"] / (per_sample_ms / 1e3) / 1e9 if per_sample_ms else None
    best = None
    if device == "cpu":  # no probe for accelerators yet
        try:
            best = peak(threads)
        except (OSError, ValueError, IndexError, subprocess.SubprocessError) as exc:
            found["peak_error"] = f"the matmul probe failed: {type(exc).__name__}"
    found.update(
        gflops=gflops,
        peak_gflops=best["gflops"] if best else None,
        peak_fraction=gflops / best["gflops"] if gflops is not None and best and best["gflops"] else None,
        peak_under_load=best["under_load"] if best else None,
        counted_from=str(onnx_path),
    )
    if counted["uncounted_ops"]:
        found["uncounted_ops"] = counted["uncounted_ops"]
    return found


def onnx_graph(workload: Any, artifact: Path | str | None) -> Path | None:
    """The ONNX graph to count for a cell: its own artifact where that is ONNX (so the bytes are its
    precision's), else the model's float32 ONNX where a converter chain makes one (converted once,
    kept with the model's artifacts), else None."""
    if artifact is not None and Path(artifact).suffix == ".onnx":
        return Path(artifact)
    if workload.artifacts.reason("onnx:fp32") is not None:
        return None
    return Path(workload.artifact("onnx:fp32"))


def for_workload(
    workload: Any, artifact: Path | str | None, batch: int, per_sample_ms: float | None, threads: int, device: str
) -> dict[str, Any] | None:
    """`for_cell` on the cell's ONNX graph (see `onnx_graph`); None when the model has none, an
    {"error": ...} record when converting to it fails."""
    try:
        graph = onnx_graph(workload, artifact)
    except Exception as exc:  # a converter's error costs the roofline, not the cell
        text = str(exc).strip().splitlines()
        return {"error": f"converting to ONNX: {type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")}
    if graph is None:
        return None
    return for_cell(graph, batch, per_sample_ms, threads, device, dict(workload.shapes or {}))
