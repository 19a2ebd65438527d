"""Keras model -> ONNX and LiteRT (TFLite) float32 artifacts."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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


def keras_to_tflite_fp32(model: Any, out: Path) -> Path:
    """The study's "not optimised" LiteRT model: float32 weights and activations."""
    import tensorflow as tf

    with native_output_silenced():
        flatbuffer = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(flatbuffer)
    tmp.replace(out)
    return out
