"""Keras model -> ONNX and LiteRT (TFLite) artifacts in every precision of the source studies."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xpubench.convert.graph import ConversionContext, converter


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter; call before it is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # no oneDNN re-ordering: same sums as ONNX/LiteRT


@contextlib.contextmanager
def native_output_silenced() -> Iterator[None]:
    """Send what converters print (from Python or C++) to /dev/null for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as devnull:
        try:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def load_keras(path: Path) -> Any:
    quiet_tensorflow()
    import keras

    return keras.saving.load_model(path, compile=False)


def keras_to_onnx(model: Any, out: Path) -> Path:
    """Export through Keras' own ONNX exporter, with a dynamic batch dimension."""
    import keras

    specs = [
        keras.InputSpec(shape=(None, *t.shape[1:]), dtype=t.dtype, name=t.name.split(":")[0])
        for t in model.inputs
    ]
    tmp = out.with_suffix(".tmp.onnx")
    with native_output_silenced():  # the exporter prints the traced signature
        model.export(str(tmp), format="onnx", input_signature=specs, verbose=False)
    tmp.replace(out)
    return out


def keras_to_tflite(model: Any, out: Path, precision: str = "fp32", calibration: list | None = None) -> Path:
    import tensorflow as tf

    return _to_tflite(tf.lite.TFLiteConverter.from_keras_model(model), out, precision, calibration)


def _to_tflite(converter_: Any, out: Path, precision: str, calibration: list | None) -> Path:
    """The study's LiteRT variants: "not optimised" (fp32), dynamic range (int8 weights, float
    activations), float16 weights, and full integer (int8, or uint8 input/output as the Edge TPU
    takes it) calibrated on a representative set."""
    import numpy as np
    import tensorflow as tf

    if precision != "fp32":
        converter_.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "fp16":
        converter_.target_spec.supported_types = [tf.float16]
    elif precision in ("int8", "uint8"):
        if not calibration:
            raise ValueError(f"a {precision} LiteRT model needs calibration data")
        samples = [np.asarray(a, dtype=np.float32) for a in calibration]

        def representative() -> Any:
            for i in range(len(samples[0])):
                yield [a[i : i + 1] for a in samples]

        converter_.representative_dataset = representative
        converter_.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.int8 if precision == "int8" else tf.uint8
        converter_.inference_input_type = io_type
        converter_.inference_output_type = io_type
    elif precision not in ("fp32", "int8-dynamic"):
        raise ValueError(f"no LiteRT {precision} conversion")
    with native_output_silenced():
        flatbuffer = converter_.convert()
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(flatbuffer)
    tmp.replace(out)
    return out


def keras_to_tflite_fp32(model: Any, out: Path) -> Path:
    return keras_to_tflite(model, out, "fp32")


@converter("keras:fp32", "onnx:fp32", requires=("tensorflow", "tf2onnx"))
def _keras_file_to_onnx(src: Path, dst: Path, ctx: ConversionContext) -> None:
    keras_to_onnx(load_keras(src), dst)


@converter("savedmodel:fp32", "onnx:fp32", requires=("tensorflow", "tf2onnx"))
def _savedmodel_to_onnx(src: Path, dst: Path, ctx: ConversionContext) -> None:
    """Through tf2onnx's own command line, which reads a SavedModel's serving signature."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--saved-model", str(src), "--output", str(dst), "--opset", "17"],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise RuntimeError(f"tf2onnx failed on {src.name}: {lines[-1] if lines else done.returncode}")


def _register_tflite(precision: str) -> None:
    calibrated = precision in ("int8", "uint8")

    @converter("keras:fp32", f"tflite:{precision}", calibrated=calibrated, requires=("tensorflow",))
    def from_keras(src: Path, dst: Path, ctx: ConversionContext) -> None:
        calibration = ctx.calibration_inputs() if calibrated else None
        keras_to_tflite(load_keras(src), dst, precision, calibration)

    @converter("savedmodel:fp32", f"tflite:{precision}", calibrated=calibrated, requires=("tensorflow",))
    def from_savedmodel(src: Path, dst: Path, ctx: ConversionContext) -> None:
        quiet_tensorflow()
        import tensorflow as tf

        calibration = ctx.calibration_inputs() if calibrated else None
        _to_tflite(tf.lite.TFLiteConverter.from_saved_model(str(src)), dst, precision, calibration)


for _precision in ("fp32", "int8-dynamic", "fp16", "int8", "uint8"):
    _register_tflite(_precision)
