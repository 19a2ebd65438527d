"""Keras -> an hls4ml project whose bit-accurate C++ emulation is compiled with g++ (no Vivado needed)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from xpubench.convert.graph import ConversionContext, converter
from xpubench.convert.keras import load_keras, native_output_silenced

MANIFEST = "xpubench.json"  # what the backend reads to load and call the compiled library
PROJECT = "xpubench_model"  # the C++ top function; the library exports PROJECT_float
# io_stream with the Latency strategy at reuse factor 1: for conv3dense1 (28x28x1, three convs, 118k
# parameters) g++ builds it in ~14 s and it emulates one sample in ~0.17 s; io_parallel unrolls every
# convolution and took 274 s to build (0.36 s per sample); the Resource strategy was slower on both counts.
IO_TYPE = "io_stream"
STRATEGY = "Latency"
REUSE_FACTOR = 1
# The compiled emulation reads its weights from text files (embedding them in the C++ took g++ over
# five minutes for that model). hls4ml bakes the folder's absolute path into the library; the project
# is built in a temporary folder and then moved, so the path becomes a variable in the library that the
# backend sets after loading it.
WEIGHTS_SYMBOL = "xpubench_weights_dir"
WEIGHTS_SYMBOL_SIZE = 4096
_FIXED = re.compile(r"^fixed<\s*(\d+)\s*,\s*(\d+)\s*>$")


def fixed_point(precision: str) -> tuple[int, int]:
    """`fixed<W,I>` -> (W total bits, I integer bits, sign included); ValueError unless 1 <= I <= W <= 64."""
    found = _FIXED.match(precision.strip())
    if not found or not 1 <= int(found.group(2)) <= int(found.group(1)) <= 64:
        raise ValueError(f"hls4ml takes fixed<W,I> with 1 <= I <= W <= 64 (e.g. fixed<16,6>), not {precision!r}")
    return int(found.group(1)), int(found.group(2))


def c_identifiers(model: Any) -> Any:
    """The model with every layer (and input) name a valid C identifier: hls4ml writes them into the
    C++ it compiles, so a name like "Conv.odd-1" would not build. Weights are carried over."""
    import keras

    def safe(name: str) -> str:
        cleaned = re.sub(r"\W", "_", name)
        return cleaned if cleaned[:1].isalpha() else f"l_{cleaned}"

    if all(safe(layer.name) == layer.name for layer in model.layers) and all(
        safe(t.name.split(":")[0]) == t.name.split(":")[0] for t in model.inputs
    ):
        return model

    def rename(layer: Any) -> Any:
        config = layer.get_config()
        config["name"] = safe(layer.name)
        return layer.__class__.from_config(config)

    clone = keras.models.clone_model(
        model,
        input_tensors=[keras.Input(batch_shape=t.shape, name=safe(t.name.split(":")[0])) for t in model.inputs],
        clone_function=rename,
    )
    clone.set_weights(model.get_weights())
    return clone


def ap_fixed(width: int, integer: int) -> str:
    """Round to nearest and saturate: the default truncation and wrap-around cost accuracy."""
    return f"ap_fixed<{width},{integer},AP_RND_CONV,AP_SAT>"


@converter("keras:fp32", "hls4ml:*", requires=("hls4ml", "bin:g++"))
def keras_to_hls4ml(src: Path, dst: Path, ctx: ConversionContext) -> None:
    width, integer = fixed_point(ctx.target_precision)
    model = c_identifiers(load_keras(src))
    import hls4ml

    with native_output_silenced(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = hls_config(hls4ml, model, width, integer)
        hls_model = hls4ml.converters.convert_from_keras_model(
            model,
            hls_config=config,
            output_dir=str(dst),
            project_name=PROJECT,
            backend="Vivado",
            io_type=IO_TYPE,
        )
        hls_model.write()
    library = f"firmware/{PROJECT}-{hls_model.config.get_config_value('Stamp')}.so"
    compile_seconds = build_library(dst)
    if not (dst / library).is_file():
        raise RuntimeError(f"g++ wrote no {library} in the hls4ml project")
    manifest = {
        "library": library,
        "entry": f"{PROJECT}_float",
        "weights_dir": "firmware/weights",
        "weights_symbol": WEIGHTS_SYMBOL,
        "weights_symbol_size": WEIGHTS_SYMBOL_SIZE,
        "inputs": [{"name": v.name, "shape": [int(s) for s in v.shape]} for v in hls_model.get_input_variables()],
        "outputs": [{"name": v.name, "shape": [int(s) for s in v.shape]} for v in hls_model.get_output_variables()],
        "target_precision": f"fixed<{width},{integer}>",
        "precision": ap_fixed(width, integer),
        "io_type": IO_TYPE,
        "strategy": STRATEGY,
        "reuse_factor": REUSE_FACTOR,
        "parameters": int(model.count_params()),
        "compile_seconds": round(compile_seconds, 3),
        "hls4ml_version": hls4ml.__version__,
    }
    (dst / MANIFEST).write_text(json.dumps(manifest, indent=2))


def hls_config(hls4ml: Any, model: Any, width: int, integer: int) -> dict:
    """Every layer at ap_fixed<W,I> (weights, biases, outputs) with exact accumulators, as hls4ml
    advises: a W-bit accumulator that rounds and saturates at every addition loses accuracy (and is
    2.5x slower to emulate). Softmax gets tables ranged for its inputs."""
    default = ap_fixed(width, integer)
    config = hls4ml.utils.config_from_keras_model(
        model, granularity="name", default_precision=default, backend="Vivado"
    )
    config["Model"].update(Strategy=STRATEGY, ReuseFactor=REUSE_FACTOR)
    classes = {layer.name: int(layer.output.shape[-1] or 1024) for layer in model.layers}
    for name, layer in config["LayerName"].items():
        precision = layer.get("Precision", {})
        # Every layer's output in the target type; the accumulators stay 'auto', which hls4ml sizes
        # to hold every product and sum exactly.
        if precision.get("result") == "auto":
            precision["result"] = default
        if "exp_table" in precision:
            n = classes.get(name) or classes.get(name.removesuffix("_softmax"), 1024)
            _softmax_config(layer, width, integer, n)
    return config


def _softmax_config(layer: dict, width: int, integer: int, n: int) -> None:
    """hls4ml's stable softmax looks up exp(x_max - x) and 1/sum in tables indexed by the top bits of
    the argument. Its default argument types wrap around (a logit 33 below the maximum reads as 1
    below it) and waste half the inverse table on negative sums: saturate, and fit the ranges."""
    index_bits = 10 if width <= 16 else 12
    table = max(18, width + 2)
    sum_bits = math.ceil(math.log2(n + 1))  # the sum of n exponentials in (0, 1] is at most n
    precision = layer["Precision"]
    precision["accum"] = f"ap_fixed<{table},{max(8, sum_bits + 1)},AP_RND,AP_SAT>"
    # hls4ml reads the other softmax types from `NAME_t` keys of the layer (its Precision entries for
    # them are ignored).
    for name in ("exp_table", "inv_table", "inv_inp"):
        precision.pop(name, None)
    layer["exp_table_t"] = f"ap_fixed<{table},8,AP_RND,AP_SAT>"
    layer["inv_table_t"] = f"ap_fixed<{table},8,AP_RND,AP_SAT>"
    layer["inv_inp_t"] = f"ap_ufixed<{max(table, index_bits + sum_bits)},{sum_bits},AP_RND,AP_SAT>"
    layer["TableSize"] = 2**index_bits
    # x_max - x lies in [0, 2^I); beyond 32 every exp() is 0 at these widths, so the range stops there.
    layer["inp_norm_t"] = f"ap_ufixed<{max(width - 1, index_bits)},{min(integer, 5)},AP_TRN,AP_SAT>"


def build_library(project: Path) -> float:
    """Run the project's build_lib.sh, its weights folder made a variable first; the seconds it took."""
    script = project / "build_lib.sh"
    header = project / "firmware" / "xpubench_weights.h"
    header.write_text(
        "// The folder the emulation reads its weights from; xpubench sets it after loading the library.\n"
        "#ifndef XPUBENCH_WEIGHTS_H_\n#define XPUBENCH_WEIGHTS_H_\n"
        f'extern "C" {{\n__attribute__((weak)) char {WEIGHTS_SYMBOL}[{WEIGHTS_SYMBOL_SIZE}] = "weights";\n}}\n'
        "#endif\n"
    )
    text = script.read_text()
    text, found = re.subn(r"^WEIGHTS_DIR=.*$", f"WEIGHTS_DIR={WEIGHTS_SYMBOL}", text, count=1, flags=re.M)
    text, included = re.subn(
        r'^INCFLAGS="(.*)"$', r'INCFLAGS="\1 -include firmware/xpubench_weights.h"', text, count=1, flags=re.M
    )
    if not (found and included):
        raise RuntimeError("this hls4ml's build_lib.sh has no WEIGHTS_DIR/INCFLAGS line to adapt")
    script.write_text(text)
    start = time.perf_counter()
    done = subprocess.run(["bash", "build_lib.sh"], cwd=project, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        errors = [line for line in (done.stderr + done.stdout).splitlines() if "error" in line.lower()]
        raise RuntimeError(f"g++ failed on the hls4ml project: {(errors or ['exit ' + str(done.returncode)])[0]}")
    return seconds
