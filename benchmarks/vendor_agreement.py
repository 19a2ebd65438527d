"""xpubench against each runtime's own timing, on the same artifact, configuration and machine.

For conv3dense1 at fp32 and int8, batch 1 and 32, one thread:
- OpenVINO: `benchmark_app` (ships in the openvino wheel; sync API, one stream, one request, one thread,
  f32 inference precision) against xpubench `--timing compute` (an infer request with its tensors set) and
  end-to-end;
- ONNX Runtime and LiteRT (neither wheel ships a tool that times at a given batch with this precision): a
  plain loop over the runtime's own call, `run_with_iobinding` / `invoke` against compute and `run` /
  set-invoke-get against end-to-end.
Rounds alternate the tool and xpubench, so drift of the machine hits both alike; each side's figure is the
median of its round medians. The last column is what the input handover and output copy add (end-to-end /
compute). Exit status 1 when a compute ratio is off by more than 3 %.

    python benchmarks/vendor_agreement.py [--rounds 3] [--seconds 2]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xpubench.backends import get_backend
from xpubench.core.cell import Cell
from xpubench.core.measure import MeasureConfig
from xpubench.models import resolve
from xpubench.run.cell_runner import input_pool, measure_cell
from xpubench.run.feasibility import artifact_kind
from xpubench.run.matrix import CellSettings

MODEL = "conv3dense1"
LIMIT = 0.03


def xpubench_ms(workload, backend: str, precision: str, batch: int, timing: str, seconds: float) -> float:
    cell = Cell(MODEL, backend, precision=precision, batch_size=batch, threads=1, timing=timing)
    config = MeasureConfig(warmup_runs=50, warmup_time_s=0.5, min_runs=100, min_time_s=seconds)
    result = measure_cell(cell, workload, CellSettings(config), scored=False)
    if result.status != "ok":
        raise RuntimeError(f"{cell.key}: {result.reason}")
    return result.latency.median


def benchmark_app_ms(xml: str, shape: tuple[int, ...], seconds: float) -> float:
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).parent / "benchmark_app")
    out = subprocess.run(
        [tool, "-m", xml, "-d", "CPU", "-api", "sync", "-nstreams", "1", "-nthreads", "1", "-nireq", "1",
         "-hint", "none", "-infer_precision", "f32", "-t", f"{seconds:g}", "-shape",
         "[" + ",".join(map(str, shape)) + "]"],
        capture_output=True, text=True, timeout=600,
    )
    found = re.search(r"Median:\s+([\d.]+)\s+(us|ms)", out.stdout + out.stderr)
    if found is None:
        raise RuntimeError(f"benchmark_app gave no median: {(out.stdout + out.stderr)[-400:]}")
    return float(found.group(1)) / (1000.0 if found.group(2) == "us" else 1.0)


def plain_ms(call: Callable[[], object], seconds: float) -> float:
    """The median of a plain timing loop over `call`, warmed up first."""
    for _ in range(50):
        call()
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) / 1e6


def onnxruntime_calls(path: str, x: np.ndarray) -> tuple[Callable[[], object], Callable[[], object]]:
    """ONNX Runtime's own calls: compute alone (I/O binding) and end to end (`run` on host arrays)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    binding = session.io_binding()
    binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x))
    for output in session.get_outputs():
        binding.bind_output(output.name)
    return (lambda: session.run_with_iobinding(binding)), (lambda: session.run(None, {name: x}))


def litert_calls(path: str, x: np.ndarray) -> tuple[Callable[[], object], Callable[[], object]]:
    """LiteRT's own calls: `invoke` alone, and set_tensor-invoke-get_tensor (quantising an int8 model's input)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path, num_threads=1)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape), strict=True)
    interpreter.allocate_tensors()
    detail, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]["index"]
    scale, zero = detail["quantization"]
    fed = x if not scale else np.clip(np.round(x / scale) + zero, -128, 127).astype(detail["dtype"])
    interpreter.set_tensor(detail["index"], fed)

    def end_to_end() -> object:
        interpreter.set_tensor(detail["index"], fed if not scale else
                               np.clip(np.round(x / scale) + zero, -128, 127).astype(detail["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return interpreter.invoke, end_to_end


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    workload = resolve(MODEL, say=lambda _m: None)
    sample = tuple(workload.input_specs[0].shape[1:])
    failed = False
    print(f"{MODEL}, 1 thread; {args.rounds} alternating rounds of {args.seconds:g} s per side")
    print(f"{'runtime':<12} {'prec':<5} {'batch':>5}  {'tool':<22} {'tool [us]':>10} {'compute [us]':>13} "
          f"{'ratio':>6} {'end-to-end [us]':>16} {'e2e/compute':>12}")
    for backend in ("openvino", "onnxruntime", "litert"):
        for precision in ("fp32", "int8"):
            kind, why = artifact_kind(get_backend(backend), Cell(MODEL, backend, precision=precision), workload)
            if kind is None:
                raise RuntimeError(why)
            artifact = str(workload.artifact(kind))
            for batch in (1, 32):
                x = input_pool(workload, batch)[0][0].astype(np.float32)
                if backend == "openvino":
                    tool_name = "benchmark_app (sync)"
                    shape = (batch, *sample)
                    def tool(a=artifact, s=shape) -> float:
                        return benchmark_app_ms(a, s, args.seconds)
                else:
                    calls = onnxruntime_calls if backend == "onnxruntime" else litert_calls
                    compute_call, _ = calls(artifact, x)
                    tool_name = "plain loop: " + ("run_with_iobinding" if backend == "onnxruntime" else "invoke")
                    tool = lambda call=compute_call: plain_ms(call, args.seconds)  # noqa: E731
                theirs, compute, e2e = [], [], []
                for _ in range(args.rounds):
                    theirs.append(tool())
                    compute.append(xpubench_ms(workload, backend, precision, batch, "compute", args.seconds))
                    e2e.append(xpubench_ms(workload, backend, precision, batch, "end-to-end", args.seconds))
                a, b, c = (statistics.median(v) for v in (theirs, compute, e2e))
                ratio = b / a
                failed |= abs(ratio - 1) > LIMIT
                print(f"{backend:<12} {precision:<5} {batch:>5}  {tool_name:<22} {a * 1e3:>10.2f} {b * 1e3:>13.2f} "
                      f"{ratio:>6.3f} {c * 1e3:>16.2f} {c / b:>12.3f}")
    print(f"compute within {LIMIT:.0%} of the runtime's own timing" if not failed else f"OUTSIDE {LIMIT:.0%}")
    return int(failed)


if __name__ == "__main__":
    raise SystemExit(main())
