"""Fuzz `xpubench run` with broken model files: mutants of small valid ONNX, TFLite and Keras seeds (bytes
flipped, truncated, fields changed through onnx's protobuf and the .keras zip's members), each measured as a
user would (`xpubench run FILE --backend onnxruntime,litert ...`, in this process; every cell still in its own
worker). The parent must never crash: each file ends as a one-line usage error (exit 2) or as a stored run whose
cells are ok, failed or unavailable with a one-line reason, and an exit code that follows from them.

    PYTHONPATH=src python benchmarks/fuzz_models.py --count 1000 --seed 20261130 --out /tmp/fuzz

Prints the outcomes tallied by format and mutation, the share rejected before any worker started, and the rate.
Exits 1 when any file crashed the parent.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

QUICK = ["--batch", "1", "--runs", "2", "--min-time", "0", "--warmup-runs", "1", "--warmup-time", "0",
         "--repeats", "1", "--cell-timeout", "120"]
BACKENDS = "onnxruntime,litert"
# How many of each (format, mutation) in every 1,000 mutants: mostly cheap, container-level damage; fewer of
# the semantic changes that reach a runtime (a Keras one costs a TensorFlow start in a worker).
MIX = {
    ("onnx", "truncate"): 150, ("onnx", "flip"): 180, ("onnx", "field"): 170,
    ("tflite", "truncate"): 140, ("tflite", "flip-head"): 60, ("tflite", "flip"): 40,
    ("keras", "truncate"): 80, ("keras", "flip"): 150, ("keras", "member"): 30,
}


@dataclass(frozen=True)
class Mutant:
    path: Path
    fmt: str
    kind: str  # truncate | flip | flip-head | field | member
    what: str  # the change, for the report


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    code: int | None  # None: main raised
    kind: str  # usage | run | CRASH
    # usage: whether the parent's container check refused it (no worker started), else the worker's check
    statuses: tuple[str, ...]
    problem: str | None  # why it counts as a crash
    seconds: float
    parent: bool  # refused by the parent's container check, before any worker


def build_seeds(folder: Path) -> dict[str, Path]:
    """A small valid model per format: MatMul + Add + Relu on 16 features (ONNX), a Dense layer (TFLite, Keras)."""
    folder.mkdir(parents=True, exist_ok=True)
    seeds = {"onnx": folder / "seed.onnx", "tflite": folder / "seed.tflite", "keras": folder / "seed.keras"}
    if not seeds["onnx"].exists():
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        rng = np.random.default_rng(0)
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["in", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["pre"]),
             helper.make_node("Relu", ["pre"], ["out"])], "seed",
            [helper.make_tensor_value_info("in", TensorProto.FLOAT, ["n", 16])],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 8])],
            [numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")],
        )
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), seeds["onnx"])
    if not seeds["tflite"].exists() or not seeds["keras"].exists():
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((16,), name="x"), keras.layers.Dense(8, activation="relu")])
        model.save(seeds["keras"])
        seeds["tflite"].write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return seeds


def make_mutants(seeds: dict[str, Path], count: int, seed: int, folder: Path) -> list[Mutant]:
    """`count` mutants drawn in MIX's proportions (so any prefix has every kind), from a fixed seed."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    plan = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
    sources = {fmt: path.read_bytes() for fmt, path in seeds.items()}
    found = []
    for i, (fmt, kind) in enumerate(plan):
        data, what = _mutate(fmt, kind, sources[fmt], rng)
        path = folder / f"m{i:04d}-{kind}.{fmt}"
        path.write_bytes(data)
        found.append(Mutant(path, fmt, kind, what))
    return found


def _mutate(fmt: str, kind: str, data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if kind == "truncate":
        cut = rng.randrange(0, len(data))
        return data[:cut], f"first {cut} of {len(data)} bytes"
    if kind in ("flip", "flip-head"):
        span = len(data) if kind == "flip" else min(len(data), 128)
        out = bytearray(data)
        where = sorted(rng.randrange(span) for _ in range(rng.randint(1, 8)))
        for at in where:
            out[at] ^= rng.randint(1, 255)
        return bytes(out), f"bytes {where} flipped"
    if kind == "field":
        return _onnx_field(data, rng)
    if kind == "member":
        return _keras_member(data, rng)
    raise ValueError(kind)


def _onnx_field(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One field of the ONNX model changed through its own protobuf classes (not checked: that is the point)."""
    import onnx

    model = onnx.load_from_string(data)
    graph = model.graph
    choice = rng.randrange(14)
    if choice == 0:
        model.opset_import[0].version = rng.randint(1, 40)
        what = f"opset {model.opset_import[0].version}"
    elif choice == 1:
        model.ir_version = rng.randint(0, 20)
        what = f"ir_version {model.ir_version}"
    elif choice == 2:
        graph.input[0].type.tensor_type.elem_type = rng.randint(0, 25)
        what = f"input elem_type {graph.input[0].type.tensor_type.elem_type}"
    elif choice == 3:
        dims = graph.input[0].type.tensor_type.shape.dim
        dims[rng.randrange(len(dims))].dim_value = rng.choice([0, 1, 3, 15, 17, 10**9])
        what = "an input dim changed"
    elif choice == 4:
        shape = graph.input[0].type.tensor_type.shape
        shape.dim.add().dim_value = rng.randint(1, 4) if rng.random() < 0.5 else 0
        what = "an input dim added"
    elif choice == 5:
        node = rng.choice(graph.node)
        node.op_type = rng.choice(["NoSuchOp", "Conv", "Softmax", "Reshape", "Gemm", "", "Loop", "Relu"])
        what = f"op_type {node.op_type!r}"
    elif choice == 6:
        node = rng.choice(graph.node)
        node.input[rng.randrange(len(node.input))] = rng.choice(["missing", "", "out"])
        what = "a node input renamed"
    elif choice == 7:
        init = rng.choice(graph.initializer)
        del init.dims[:]
        init.dims.extend(rng.choice([[8, 16], [16, 8, 1], [0], [3], [16, 9]]))
        what = f"initializer {init.name} dims {list(init.dims)}"
    elif choice == 8:
        init = rng.choice(graph.initializer)
        init.raw_data = init.raw_data[: rng.randrange(len(init.raw_data))]
        what = f"initializer {init.name} data cut"
    elif choice == 9:
        init = rng.choice(graph.initializer)
        init.data_type = rng.choice([0, 2, 6, 7, 10, 11, 16, 99])
        what = f"initializer {init.name} data_type {init.data_type}"
    elif choice == 10:
        del graph.output[:]
        what = "no graph outputs"
    elif choice == 11:
        node = rng.choice(graph.node)
        node.attribute.add().CopyFrom(onnx.helper.make_attribute(rng.choice(["axis", "perm", "to"]),
                                                                 rng.choice([99, -7, [0, 5]])))
        what = f"attribute {node.attribute[-1].name} on {node.op_type}"
    elif choice == 12:
        graph.node.append(graph.node[rng.randrange(len(graph.node))])
        what = "a node duplicated"
    else:
        node = rng.choice(graph.node)
        node.domain = rng.choice(["com.unknown", "ai.onnx.ml", "com.microsoft"])
        what = f"domain {node.domain}"
    return model.SerializeToString(), what


def _keras_member(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One member of the .keras zip changed, the archive rewritten with valid checksums."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    layers = config["config"]["layers"]
    dense = next(layer for layer in layers if layer["class_name"] == "Dense")
    choice = rng.randrange(9)
    if choice == 0:
        members["config.json"] = members["config.json"][: rng.randrange(len(members["config.json"]))]
        what = "config.json cut"
    elif choice == 1:
        dense["config"]["units"] = rng.choice([0, 9, 9999])
        what = f"units {dense['config']['units']}"
    elif choice == 2:
        dense["class_name"] = "NoSuchLayer"
        what = "an unknown layer class"
    elif choice == 3:
        layers[0]["config"]["batch_shape"] = [None, rng.choice([0, 15, 17])]
        what = f"input shape {layers[0]['config']['batch_shape']}"
    elif choice == 4:
        members.pop("model.weights.h5")
        what = "no weights"
    elif choice == 5:
        weights = members["model.weights.h5"]
        members["model.weights.h5"] = weights[: rng.randrange(len(weights))]
        what = "weights cut"
    elif choice == 6:
        members.pop("metadata.json", None)
        what = "no metadata.json"
    elif choice == 7:
        members["config.json"] = b"[]"
        what = "config.json a list"
    else:
        dense["config"]["activation"] = "no_such_activation"
        what = "an unknown activation"
    if choice not in (0, 4, 5, 6, 7):
        members["config.json"] = json.dumps(config).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue(), what


def run_one(mutant: Mutant, results: Path) -> Outcome:
    """`xpubench run MUTANT` in this process, judged: a usage error, a run, or a CRASH with why."""
    from xpubench.cli import main
    from xpubench.errors import UsageError
    from xpubench.models.filecheck import check_user_model
    from xpubench.run.exits import exit_code

    try:
        check_user_model(str(mutant.path))  # the check `run` makes first, asked alone: does a worker start?
        parent = False
    except UsageError:
        parent = True

    out_json = results / "last.json"
    out_json.unlink(missing_ok=True)
    stdout, stderr = io.StringIO(), io.StringIO()
    started = time.monotonic()
    code: int | None = None
    problem = None
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["run", str(mutant.path), "--backend", BACKENDS, "--results", str(results),
                         "--json", str(out_json), *QUICK])
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 (the parent must raise nothing: any exception is the finding)
        import traceback

        problem = f"raised {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
    seconds = time.monotonic() - started
    err = stderr.getvalue()
    statuses: tuple[str, ...] = ()
    if problem is None and "Traceback" in err:
        problem = f"a traceback on stderr:\n{err[-3000:]}"
    if problem is None and code == 2:
        lines = [line for line in err.splitlines() if line.startswith("xpubench run: error:")]
        if len(lines) != 1:
            problem = f"exit 2 without one error line:\n{err[-2000:]}"
        kind = "usage"
    elif problem is None and code in (0, 3, 4):
        kind = "run"
        cells = json.loads(out_json.read_text())["cells"]
        statuses = tuple(c["status"] for c in cells)
        bad = [c for c in cells if c["status"] not in ("ok", "failed", "unavailable")
               or (c["status"] != "ok" and (not c["reason"] or "\n" in c["reason"]))]
        if bad:
            problem = f"cells without a one-line reason: {bad}"
        elif code != exit_code(statuses):
            problem = f"exit {code} for statuses {statuses}"
    elif problem is None:
        problem = f"exit {code}:\n{err[-3000:]}"
    if parent and kind != "usage":
        problem = problem or "the container check refused it, yet `run` went on"
    return Outcome(mutant, code, "CRASH" if problem else kind, statuses, problem, seconds, parent)


def label(outcome: Outcome) -> str:
    if outcome.kind == "usage":
        return "usage error, no worker" if outcome.parent else "usage error, from a worker"
    if outcome.kind != "run":
        return outcome.kind
    counts = Counter(outcome.statuses)
    return "run " + ",".join(f"{s}x{counts[s]}" for s in ("ok", "failed", "unavailable") if counts[s])


def fuzz(count: int, seed: int, folder: Path, say=print) -> list[Outcome]:
    seeds = build_seeds(folder / "seeds")
    mutants = make_mutants(seeds, count, seed, folder / "mutants")
    results = folder / "results"
    results.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for i, mutant in enumerate(mutants, 1):
        outcome = run_one(mutant, results)
        outcomes.append(outcome)
        if outcome.kind == "CRASH":
            say(f"CRASH {mutant.path.name} ({mutant.what}): {outcome.problem}")
        if i % 50 == 0:
            say(f"{i}/{len(mutants)} files, {sum(o.seconds for o in outcomes):.0f} s")
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    by_kind = Counter((o.mutant.fmt, o.mutant.kind, label(o)) for o in outcomes)
    lines = [f"{'format':<7} {'mutation':<10} {'outcome':<34} files"]
    lines += [f"{f:<7} {k:<10} {o:<34} {n}" for (f, k, o), n in sorted(by_kind.items())]
    seconds = sum(o.seconds for o in outcomes)
    parent = [o for o in outcomes if o.parent]
    usage = [o for o in outcomes if o.kind == "usage"]
    crashes = [o for o in outcomes if o.kind == "CRASH"]
    rest = seconds - sum(o.seconds for o in parent)
    lines.append(f"{len(outcomes)} files in {seconds:.0f} s ({len(outcomes) / max(seconds, 1e-9):.2f} files/s); "
                 f"{len(usage)} usage errors (exit 2, nothing stored), {len(parent)} of them refused without a worker "
                 f"({sum(o.seconds for o in parent) / max(len(parent), 1) * 1e3:.0f} ms each), the other "
                 f"{len(outcomes) - len(parent)} files {rest / max(len(outcomes) - len(parent), 1):.2f} s each; "
                 f"{len(crashes)} crashes")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--out", type=Path, default=Path("fuzz-out"))
    args = parser.parse_args()
    import os

    os.environ.setdefault("XPUBENCH_CACHE", str(args.out.resolve() / "cache"))  # converted mutants stay there
    outcomes = fuzz(args.count, args.seed, args.out, say=lambda line: print(line, file=sys.__stderr__, flush=True))
    print(summary(outcomes))
    return 1 if any(o.kind == "CRASH" for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
