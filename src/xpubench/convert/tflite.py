"""A LiteRT (TFLite) float32 flatbuffer -> ONNX, so a user's .tflite reaches every ONNX-fed runtime."""

from __future__ import annotations

from pathlib import Path

from xpubench.convert.graph import ConversionContext, converter
from xpubench.convert.keras import native_output_silenced, quiet_tensorflow


@converter("tflite:fp32", "onnx:fp32", requires=("tf2onnx", "tensorflow"))
def tflite_to_onnx(src: Path, dst: Path, ctx: ConversionContext) -> None:
    quiet_tensorflow()
    import tf2onnx

    with native_output_silenced():
        tf2onnx.convert.from_tflite(str(src), opset=17, output_path=str(dst))
