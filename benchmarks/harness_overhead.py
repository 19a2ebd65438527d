"""How much xpubench adds to what it measures: its reported median for dense1 (batch 1, 1 thread)
against a plain loop over each runtime's own call on the same artifact and the same inputs.

Rounds alternate xpubench and the plain loop, so drift of the machine hits both alike; the
figure per side is the median of its round medians. Exit status 1 when a ratio is off by > 10 %.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from xpubench.core.cell import Cell
from xpubench.core.measure import MeasureConfig
from xpubench.models import resolve
from xpubench.run.cell_runner import input_pool, measure_cell
from xpubench.run.matrix import CellSettings

ROUNDS = 5
SECONDS = 2.0
LIMIT = 0.10


def plain_onnxruntime(path, inputs):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    feeds = [{name: x} for x in inputs]
    return lambda i: session.run(None, feeds[i % len(feeds)])


def plain_litert(path, inputs):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    i_in = interpreter.get_input_details()[0]["index"]
    i_out = interpreter.get_output_details()[0]["index"]

    def call(i):
        interpreter.set_tensor(i_in, inputs[i % len(inputs)])
        interpreter.invoke()
        return interpreter.get_tensor(i_out)

    return call


def plain_median_ms(call) -> float:
    for i in range(200):  # warm-up
        call(i)
    times = []
    end = time.perf_counter() + SECONDS
    i = 0
    while time.perf_counter() < end:
        t0 = time.perf_counter_ns()
        call(i)
        times.append(time.perf_counter_ns() - t0)
        i += 1
    return float(np.median(times)) / 1e6


def main() -> int:
    workload = resolve("dense1")
    inputs = [arrays[0] for arrays in input_pool(workload, 1)]  # the pool xpubench rotates through
    config = MeasureConfig(min_time_s=SECONDS)
    failed = False
    print(f"dense1, batch 1, 1 thread; {ROUNDS} alternating rounds of {SECONDS:g} s each")
    print(f"{'runtime':<12} {'xpubench [us]':>14} {'plain loop [us]':>16} {'ratio':>7}")
    runtimes = (("onnxruntime", "onnx:fp32", plain_onnxruntime), ("litert", "tflite:fp32", plain_litert))
    for backend, kind, plain in runtimes:
        call = plain(workload.artifact(kind), inputs)
        ours, theirs = [], []
        for _ in range(ROUNDS):
            result = measure_cell(Cell("dense1", backend, batch_size=1, threads=1), workload, CellSettings(config))
            ours.append(result.latency.median)
            theirs.append(plain_median_ms(call))
        a, b = statistics.median(ours), statistics.median(theirs)
        ratio = a / b
        failed |= abs(ratio - 1) > LIMIT
        print(f"{backend:<12} {a * 1e3:>14.3f} {b * 1e3:>16.3f} {ratio:>7.3f}")
    print("within 10 %" if not failed else "OUTSIDE 10 %")
    return int(failed)


if __name__ == "__main__":
    raise SystemExit(main())
