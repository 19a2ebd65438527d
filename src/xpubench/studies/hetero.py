"""`xpubench study hetero`: the heterogeneous-platforms study's experiments measured here, its takeaways checked."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from xpubench.core.measure import MeasureConfig
from xpubench.hetero.parts import Part, parse_parts
from xpubench.hetero.spec import SplitSpec
from xpubench.report.table import num
from xpubench.run.matrix import Matrix
from xpubench.studies.seeds import NOT_RUN, QUICK_MEASURE, STUDY_MEASURE, Table

Record = dict[str, Any]
MODES = ("quick", "default")
CPU_PARTS = "onnxruntime:cpu@0,litert:cpu@1"  # two CPU runtimes on separate cores stand in for two accelerators
GPU_PARTS = "onnxruntime:cpu@0,onnxruntime:cuda"
# conv3dense1 (three convolutions, then dense layers) is the zoo's closest to AlexNet's shape (a plain conv stack
# and a dense head, no branches), at a size these machines measure in seconds.
ALEXNET_STAND_IN = "conv3dense1"

SOURCE = ("P. Damle, P. Jayakumar, 'Optimizing Inference on Heterogeneous Platforms' (CS 6501), Edge TPU (Coral, "
          "USB) and NVIDIA GTX 1650 / RTX 2060 (seed 001)")
# The study's results for these experiments are plots; what its slides say of each, as printed.
STUDY_SAYS = {
    "singles": "Takeaways: Edge TPU best for single-sample, small-scale, simple DNN inference; GPUs better at "
               "large batches (amortizing overhead) and with complex architectures (CNN)",
    "scans": "Table 1 (matrix x vector, ms): Edge TPU 0.0586-14.0, GTX 1650 0.0624-0.1106, Xeon 0.0412-0.1555 "
             "for sides 64-1024: measured here by `xpubench study seeds`, table (c)",
    "data": "'Edge TPU's dominance at small scale balanced with its serial and USB limitations' (small dense "
            "network); 'Edge TPU delivers slow but reliable performance' (AlexNet CNN)",
    "shard": "'TF was not designed to split layer-wise': the CNN's layers were sharded by hand",
}

HOLDS, FAILS, CANNOT = "holds here", "does not hold here", "cannot check here"
SAME_OUTPUTS_MAX_ABS = 1e-4  # a split's outputs against the float32 reference: float32 rounding, not a new model
PREDICTION_WITHIN = 0.20  # the planner's prediction against the measurement, as issue 16 asks


@dataclass(frozen=True)
class Plan:
    """What the study measures: each part alone per model and batch (matrices), then the splits."""

    mode: str
    parts: tuple[Part, ...]
    dense: str  # the small dense network
    cnn: str  # the AlexNet-like CNN, split data-parallel
    shard: str  # the CNN sharded into stages
    batches: tuple[int, ...]  # of the single parts; the largest is the data-parallel batch
    shard_batch: int
    measure: MeasureConfig
    tdp_w: float | None = None

    @property
    def data_batch(self) -> int:
        return max(self.batches)

    @property
    def matrices(self) -> tuple[Matrix, ...]:
        """One matrix per part: its backend on its device and precision, one thread per pinned CPU; then the
        data-parallel split of the small dense network and of the CNN over the parts, as `run --backend
        split:data:...` measures it."""
        models = tuple(dict.fromkeys((self.dense, self.cnn, self.shard)))
        singles = tuple(Matrix(models=models, backends=(backend_of(p),), batch_sizes=self.batches,
                               threads=(max(1, len(p.cpus)),), precisions=(p.precision,), devices=(p.device,),
                               measure=self.measure, tdp_w=self.tdp_w) for p in self.parts)
        split = SplitSpec("data", self.parts).text
        data = Matrix(models=tuple(dict.fromkeys((self.dense, self.cnn))), backends=(split,),
                      batch_sizes=(self.data_batch,), measure=self.measure, tdp_w=self.tdp_w)
        return (*singles, data)

    def splits(self) -> list[tuple[str, str, str, int]]:
        """(label, model, mode, batch) of each split the planner chooses as it runs (no matrix cell)."""
        return [(f"layer sharding of a CNN ({self.shard}), the planner's 2 stages", self.shard, "pipeline",
                 self.shard_batch)]


def backend_of(part: Part) -> str:
    """The part's backend as a matrix names it, with its options: `litert:xnnpack=off`."""
    return ":".join([part.backend, *(f"{k}={v}" for k, v in part.options)])


def default_parts(gpu_here: bool) -> str:
    return GPU_PARTS if gpu_here else CPU_PARTS


def plan(mode: str, devices: str, tdp_w: float | None = None) -> Plan:
    """The study's cells for `devices` (parts as `xpubench split --devices` takes them); ValueError, one line."""
    if mode not in MODES:
        raise ValueError(f"unknown study mode {mode!r}: choose from {', '.join(MODES)}")
    parts = parse_parts(devices)
    if len(parts) != 2:
        raise ValueError(f"the study splits over two devices: give two parts, got {len(parts)}")
    if mode == "quick":
        return Plan(mode, parts, "dense1:tiny", f"{ALEXNET_STAND_IN}:tiny", f"{ALEXNET_STAND_IN}:tiny", (1, 32), 32,
                    QUICK_MEASURE, tdp_w)
    return Plan(mode, parts, "dense1", ALEXNET_STAND_IN, ALEXNET_STAND_IN, (1, 32, 256), 32, STUDY_MEASURE, tdp_w)


# ---------------------------------------------------------------------------------------------------------------
# The run's records, by experiment


def ok(r: Record | None) -> bool:
    return bool(r) and r["status"] == "ok"  # type: ignore[index]


def single(records: Sequence[Record], model: str, part: Part, batch: int) -> Record | None:
    """The single cell of `part` alone on `model` at `batch` (a matrix cell, not a split)."""
    for r in records:
        if (r["backend"] != "split" and r["model"] == model and r["backend"] == backend_of(part).partition(":")[0]
                and r["device"] == part.device and r["precision"] == part.precision and r["batch_size"] == batch):
            return r
    return None


def splits(records: Sequence[Record], model: str, mode: str) -> list[Record]:
    return [r for r in records if r["backend"] == "split" and r["model"] == model
            and (r.get("options") or {}).get("mode") == mode]


def sharded(records: Sequence[Record], model: str) -> tuple[Record | None, Record | None]:
    """(the planner's multi-stage plan, the best single part as the planner measured it) of the sharding."""
    found = splits(records, model, "pipeline")
    staged = [r for r in found if (r.get("options") or {}).get("cuts", "none") != "none"]
    alone = [r for r in found if (r.get("options") or {}).get("cuts", "none") == "none"]
    return (staged[0] if staged else None), (alone[0] if alone else None)


def per_sample(r: Record | None) -> float | None:
    return r["per_sample_ms"] if ok(r) else None


def fastest(records: Sequence[Record], study: Plan, model: str, batch: int) -> tuple[Part, float] | None:
    timed = [(p, t) for p in study.parts if (t := per_sample(single(records, model, p, batch))) is not None]
    return min(timed, key=lambda pt: pt[1]) if timed else None


def is_gpu(part: Part) -> bool:
    return part.device.startswith("cuda")


def is_edgetpu(part: Part) -> bool:
    return part.backend == "edgetpu"


# ---------------------------------------------------------------------------------------------------------------
# Takeaways


@dataclass(frozen=True)
class Verdict:
    claim: str  # the study's words
    verdict: str  # HOLDS, FAILS or CANNOT
    why: str  # our figures behind it, or what is missing

    def line(self) -> str:
        return f"- {self.claim}: {self.verdict}{': ' if self.why else ''}{self.why}"


def takeaways(records: Sequence[Record], study: Plan) -> list[Verdict]:
    """The study's takeaways and experiments, each checked against this run's stored figures."""
    return [check(records, study) for check in CHECKS]


def _ms(value: float) -> str:
    return f"{num(value)} ms"


def _who(found: tuple[Part, float] | None) -> str:
    return f"{found[0].spec} ({_ms(found[1])} per sample)" if found else "no part measured"


def _check_edgetpu_small_dense(records: Sequence[Record], study: Plan) -> Verdict:
    claim = "Edge TPU is best for single-sample, small-scale, simple DNN inference"
    best = fastest(records, study, study.dense, 1)
    here = f"fastest on {study.dense} at batch 1 here: {_who(best)}"
    if not any(is_edgetpu(p) and ok(single(records, study.dense, p, 1)) for p in study.parts):
        return Verdict(claim, CANNOT, f"no Edge TPU measured; {here}")
    return Verdict(claim, HOLDS if best and is_edgetpu(best[0]) else FAILS, here)


def _check_batches_amortise(records: Sequence[Record], study: Plan) -> Verdict:
    claim = "large batches amortise each call's overhead (per-sample time falls from batch 1 to the largest)"
    big = study.data_batch
    pairs = [(p, m, per_sample(single(records, m, p, 1)), per_sample(single(records, m, p, big)))
             for p in study.parts for m in dict.fromkeys((study.dense, study.cnn))]
    timed = [(p, m, a, b) for p, m, a, b in pairs if a is not None and b is not None]
    if not timed:
        return Verdict(claim, CANNOT, f"no part measured at batch 1 and {big}")
    why = "; ".join(f"{p.spec} {m} {num(a)} -> {num(b)} ms" for p, m, a, b in timed)
    return Verdict(claim, HOLDS if all(b < a for _, _, a, b in timed) else FAILS, why)


def _gpu_best(records: Sequence[Record], study: Plan, claim: str, models: Sequence[str], batch: int) -> Verdict:
    found = [(m, fastest(records, study, m, batch)) for m in models]
    why = "; ".join(f"fastest on {m} at batch {batch}: {_who(f)}" for m, f in found)
    if not any(is_gpu(p) and ok(single(records, m, p, batch)) for p in study.parts for m in models):
        return Verdict(claim, CANNOT, f"no GPU measured; {why}")
    return Verdict(claim, HOLDS if all(f and is_gpu(f[0]) for _, f in found) else FAILS, why)


def _check_gpu_large_batches(records: Sequence[Record], study: Plan) -> Verdict:
    return _gpu_best(records, study, "GPUs performed better at large batches", (study.dense, study.cnn),
                     study.data_batch)


def _check_gpu_cnn(records: Sequence[Record], study: Plan) -> Verdict:
    return _gpu_best(records, study, "GPUs better handled more complex architectures (CNN)", (study.cnn,),
                     study.data_batch)


def _check_link_bottleneck(records: Sequence[Record], study: Plan) -> Verdict:
    """The study's link was USB; ours is whatever joins the parts: the claim checked on our link."""
    claim = "the link between the devices (USB there) was the major bottleneck"
    staged, _ = sharded(records, study.shard)
    if not ok(staged):
        return Verdict(claim, CANNOT, "no layer-sharded cell measured")
    figures = staged["split"]  # type: ignore[index]
    transfer = sum(t["median_ms"] or 0.0 for t in figures["transfers"])
    slowest = max((s["median_ms"] or 0.0) for s in figures["stages"])
    how = ", ".join(sorted({t["how"] for t in figures["transfers"]})) or "none"
    usb = "" if any(is_edgetpu(p) for p in study.parts) else " (no Edge TPU: our link, not USB)"
    why = (f"link ({how}){usb} {_ms(transfer)} per batch against the slowest stage's {_ms(slowest)}, "
           f"{transfer / figures['stage_sum_ms'] * 100:.1f} % of the pipeline's time")
    return Verdict(claim, HOLDS if transfer >= slowest else FAILS, why)


def _check_data_parallel(records: Sequence[Record], study: Plan) -> Verdict:
    claim = "splitting each batch across both devices beats the faster one alone (small dense and CNN)"
    found = [(m, r) for m in dict.fromkeys((study.dense, study.cnn)) for r in splits(records, m, "data")[:1]]
    timed = [(m, r) for m, r in found if ok(r) and r["split"].get("speedup") is not None]
    if not timed:
        return Verdict(claim, CANNOT, "no data-parallel cell measured")
    why = "; ".join(f"{m} x{r['split']['speedup']:.2f} over {r['split']['best_alone_part']}, "
                    f"{r['split']['efficiency'] * 100:.0f} % of the parts' sum" for m, r in timed)
    return Verdict(claim, HOLDS if all(r["split"]["speedup"] > 1 for _, r in timed) else FAILS, why)


def _check_sharding(records: Sequence[Record], study: Plan) -> Verdict:
    """The study sharded by hand; ours cuts the graph: the shards must give the whole model's outputs and the
    planner must have predicted the measured latency."""
    claim = "a CNN's layers sharded over two devices (by hand there) give the whole model's outputs"
    staged, _ = sharded(records, study.shard)
    if not ok(staged):
        return Verdict(claim, CANNOT, "no layer-sharded cell measured")
    fidelity = staged.get("fidelity") or {}  # type: ignore[union-attr]
    max_abs = fidelity.get("max_abs")
    if max_abs is None:
        return Verdict(claim, CANNOT, "no float32 reference to compare the shards' outputs with")
    predicted = (staged["split"].get("prediction") or {}).get("latency_ms")  # type: ignore[index]
    measured = staged["latency_ms"]["median"]  # type: ignore[index]
    error = f"; the planner predicted {_ms(predicted)} per batch, measured {_ms(measured)} " \
            f"({(predicted - measured) / measured * 100:+.0f} %)" if predicted else ""
    why = f"max |diff| {max_abs:.3g} against the float32 reference, top-1 agreement " \
          f"{fidelity.get('top1_agreement')}{error}"
    return Verdict(claim, HOLDS if max_abs <= SAME_OUTPUTS_MAX_ABS else FAILS, why)


CHECKS: tuple[Callable[[Sequence[Record], Plan], Verdict], ...] = (
    _check_edgetpu_small_dense, _check_gpu_large_batches, _check_gpu_cnn, _check_link_bottleneck,
    _check_batches_amortise, _check_data_parallel, _check_sharding,
)


# ---------------------------------------------------------------------------------------------------------------
# Tables


def singles_table(records: Sequence[Record], study: Plan) -> Table:
    rows = []
    for model in dict.fromkeys((study.dense, study.cnn, study.shard)):
        for batch in study.batches:
            cells = [single(records, model, p, batch) for p in study.parts]
            texts = [num(per_sample(r)) if ok(r) else (r["status"] if r else NOT_RUN) for r in cells]
            best = fastest(records, study, model, batch)
            rows.append([model, str(batch), *texts, best[0].spec if best else ""])
    return Table("which device suits which model: ours (median time per sample [ms], each part alone)",
                 ["model", "batch", *(p.spec for p in study.parts), "fastest"], rows,
                 [f"the study: {STUDY_SAYS['singles']}", f"the scans: {STUDY_SAYS['scans']}"])


def data_table(records: Sequence[Record], study: Plan) -> Table:
    rows = []
    for model in dict.fromkeys((study.dense, study.cnn)):
        for r in splits(records, model, "data"):
            if not ok(r):
                rows.append([model, str(r["batch_size"]), r["status"], "", "", "", "", r["reason"][:60]])
                continue
            s = r["split"]
            alone = " + ".join(num(p.get("alone_sps")) for p in s["parts"])
            shares = " / ".join(f"{(p.get('share') or 0) * 100:.0f}%" for p in s["parts"])
            rows.append([model, str(r["batch_size"]), alone, num(s["sum_alone_sps"]), num(r["throughput_sps"]),
                         f"{s['efficiency'] * 100:.0f} %", f"x{s['speedup']:.2f}", shares])
    return Table(f"data parallelism: ours ({' + '.join(p.spec for p in study.parts)}, samples per second)",
                 ["model", "batch", "parts alone [1/s]", "sum [1/s]", "split [1/s]", "of sum", "speed-up",
                  "shares"], rows, [f"the study: {STUDY_SAYS['data']}"])


def shard_table(records: Sequence[Record], study: Plan) -> Table:
    rows = []
    for r in sharded(records, study.shard):
        if r is None:
            continue
        options = r.get("options") or {}
        if not ok(r):
            rows.append([r["device"], options.get("cuts", ""), r["status"], "", "", "", "", ""])
            continue
        s = r["split"]
        predicted = s.get("prediction") or {}
        stages = " | ".join(num(x["median_ms"]) for x in s["stages"])
        transfers = " | ".join(num(x["median_ms"]) for x in s["transfers"]) or "-"
        rows.append([r["device"], options.get("cuts", ""), num(predicted.get("latency_ms")),
                     num(r["latency_ms"]["median"]), num(predicted.get("throughput_sps")), num(r["throughput_sps"]),
                     stages, transfers, num((r.get("fidelity") or {}).get("max_abs"))])
    return Table(f"layer sharding: ours ({study.shard}, batch {study.shard_batch}; the planner's prediction beside "
                 "the measurement)",
                 ["stages", "cut", "predicted [ms]", "measured [ms]", "predicted [1/s]", "measured [1/s]",
                  "stage [ms]", "link [ms]", "max |diff|"], rows, [f"the study: {STUDY_SAYS['shard']}"])


def render(records: Sequence[Record], study: Plan) -> str:
    blocks = [singles_table(records, study), data_table(records, study), shard_table(records, study)]
    checks = "\n".join(v.line() for v in takeaways(records, study))
    return "\n\n".join([*(t.render() for t in blocks),
                        f"the study's takeaways, checked against this run ({SOURCE}):\n{checks}"])
