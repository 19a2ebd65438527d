"""Split execution measured: data-parallel throughput against the sum of the parts' (target: 0.85 of it), a
pipeline's stage + transfer times against its measured latency, and the planner's predictions against the
measurements of its plan and two other cuts.

    PYTHONPATH=src python benchmarks/hetero_split.py [MODEL] [--batch N] [--min-time S] [--second BACKEND]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="conv3dense1:tiny")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--second", default="openvino", help="the pipeline's second backend (it reads ONNX)")
    args = parser.parse_args()

    from xpubench.core.measure import MeasureConfig
    from xpubench.hardware.host import allowed_cpus
    from xpubench.hetero import planner
    from xpubench.hetero.cell import measure_data_parallel, measure_pipeline
    from xpubench.hetero.parts import Part
    from xpubench.models import resolve
    from xpubench.run.matrix import CellSettings
    from xpubench.run.reference import cached_reference
    from xpubench.run.tasks import claim_process

    claim_process("tensorflow", 1)
    workload, _, _ = cached_reference(resolve(args.model, say=print))
    cpus = allowed_cpus()
    a, b = (cpus[0],), (cpus[-1],)
    settings = CellSettings(MeasureConfig(warmup_runs=5, warmup_time_s=0.2, min_runs=30, min_time_s=args.min_time))
    folder = Path(tempfile.mkdtemp(prefix="hetero-bench-"))

    print(f"== data-parallel, {args.model} batch {args.batch}, onnxruntime@{a[0]} + litert@{b[0]}")
    for executor in ("thread", "process"):
        m = measure_data_parallel(args.model, workload, (Part("onnxruntime", cpus=a), Part("litert", cpus=b)),
                                  args.batch, settings, executor).split
        if not m:
            print(f"{executor}: failed")
            continue
        shares = ", ".join(f"{p['part']} {p['share']:.0%} busy {p['busy_ms']:.2f} idle {p['idle_ms']:.2f} ms"
                           for p in m["parts"])
        combined = m["efficiency"] * m["sum_alone_sps"]
        print(f"{executor:8s} combined {combined:8.0f}/s  sum of parts alone {m['sum_alone_sps']:8.0f}/s  "
              f"ratio {m['efficiency']:.2f} (target 0.85)  speed-up over best part {m['speedup']:.2f}  [{shares}]")

    parts = (Part("onnxruntime", cpus=a), Part(args.second, cpus=b))
    print(f"\n== planner, {args.model} batch {args.batch}, {parts[0].spec} | {parts[1].spec}")
    started = time.perf_counter()
    found = planner.profile(workload, parts, args.batch, folder)
    print(f"profiled {len(found.candidates)} cuts in {time.perf_counter() - started:.1f} s")
    options = planner.plans(found, parts)
    chosen = planner.choose([p for p in options if len(p.parts) > 1], "latency")
    single = planner.best_single(options, "latency")
    two_stage = [p for p in options if len(p.parts) == 2 and p.parts == parts and p != chosen]
    others = [two_stage[len(two_stage) // 4], two_stage[3 * len(two_stage) // 4]] if len(two_stage) >= 2 else []
    print(f"probes: whole model alone {', '.join(f'{c:.3f}' for c in found.whole_ms)} ms, slowdown with every part "
          f"busy {', '.join(f'{x:.2f}' for x in found.slowdown)}, thread hand-over {found.hop_ms * 1e3:.0f} us")
    errors = []
    for label, plan in (("chosen", chosen), ("single", single), *(("unused", p) for p in others)):
        got = measure_pipeline(args.model, workload, plan.parts, plan.cuts, args.batch, settings, folder)
        if got.result.status != "ok":
            print(f"{label}: {got.result.reason}")
            continue
        r, s = got.result, got.split
        stages = " + ".join(f"{x['median_ms']:.3f}" for x in s["stages"])
        transfers = " + ".join(f"{x['median_ms']:.4f}" for x in s["transfers"]) or "0"
        latency_error = plan.latency_ms / r.latency.median - 1
        throughput_error = plan.throughput_sps / r.throughput_sps - 1
        if label != "single":
            errors += [abs(latency_error), abs(throughput_error)]
        print(f"{label:6s} {plan.describe()}\n"
              f"       latency    predicted {plan.latency_ms:8.3f} ms/batch  measured {r.latency.median:8.3f}"
              f"  error {latency_error:+6.1%}\n"
              f"       throughput predicted {plan.throughput_sps:8.0f}/s        measured {r.throughput_sps:8.0f}"
              f"  error {throughput_error:+6.1%}\n"
              f"       predicted stages {' + '.join(f'{x:.3f}' for x in plan.stage_ms)} ms; measured stages {stages}"
              f" ms, transfers {transfers} ms, sum {s['stage_sum_ms']:.3f} ms")
    if errors:
        print(f"\nlargest planner error over the chosen plan and the unused cuts: {max(errors):.1%} (target 20 %)")

if __name__ == "__main__":
    main()
