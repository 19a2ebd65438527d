"""ONNX float32 -> float16, dynamic-range int8 and calibrated static (QDQ) int8."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from xpubench.convert.graph import ConversionContext, converter
from xpubench.convert.keras import native_output_silenced

# ONNX Runtime's quantiser writes per-channel DequantizeLinear nodes with an `axis` attribute, which
# exists from opset 13; it keeps the model's opset, so an older model quantises into an invalid graph.
QUANTISE_OPSET = 13


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """ONNX Runtime's quantiser logs through `logging` and prints from C++."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with native_output_silenced():
            yield
    finally:
        root.setLevel(level)


def _upgraded_opset(src: Path, dst: Path) -> Path:
    """`src`, or a copy of it converted to QUANTISE_OPSET next to `dst` when its opset is older
    (a newer opset is kept)."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(src))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), QUANTISE_OPSET)
    if opset >= QUANTISE_OPSET:
        return src
    upgraded = dst.with_name(f"opset{QUANTISE_OPSET}.onnx")
    onnx.save(version_converter.convert_version(model, QUANTISE_OPSET), str(upgraded))
    return upgraded


@converter("onnx:fp32", "onnx:fp16", requires=("onnx", "onnxconverter_common"))
def onnx_to_fp16(src: Path, dst: Path, ctx: ConversionContext) -> None:
    """Weights and activations in float16; inputs and outputs stay float32 so callers are unchanged."""
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


@converter("onnx:fp32", "onnx:int8-dynamic", requires=("onnxruntime",))
def onnx_to_int8_dynamic(src: Path, dst: Path, ctx: ConversionContext) -> None:
    """int8 weights; activations quantised on the fly at run time (the dynamic-range form)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    upgraded = _upgraded_opset(src, dst)
    with _quiet():
        quantize_dynamic(str(upgraded), str(dst), weight_type=QuantType.QInt8)
    if upgraded != src:
        upgraded.unlink()


@converter("onnx:fp32", "onnx:int8", calibrated=True, requires=("onnxruntime",))
def onnx_to_int8(src: Path, dst: Path, ctx: ConversionContext) -> None:
    """Static QDQ int8: int8 weights per channel (7-bit range), uint8 activations calibrated on
    representative inputs. uint8 activations with int8 weights are what ONNX Runtime's CPU kernels fuse into
    QLinearConv / QLinearMatMul (int8 activations there fall back to slower paths)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    inputs = onnx.load(str(src), load_external_data=False).graph.input
    names = [i.name for i in inputs]
    first = inputs[0].type.tensor_type.shape.dim[0] if inputs[0].type.tensor_type.shape.dim else None
    batch = first.dim_value if first is not None and first.dim_value > 0 else 1  # a fixed batch is fed whole
    arrays = ctx.calibration_inputs()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._starts = iter(range(0, len(arrays[0]) - batch + 1, batch))

        def get_next(self) -> dict | None:
            i = next(self._starts, None)
            return None if i is None else {n: a[i : i + batch] for n, a in zip(names, arrays, strict=True)}

    upgraded = _upgraded_opset(src, dst)
    prepared = dst.with_name("preprocessed.onnx")
    with _quiet():
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(dst),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            # 7-bit weights: without VNNI, x86 u8*s8 kernels sum pairs in 16 bits and saturate.
            reduce_range=True,
        )
    prepared.unlink()
    if upgraded != src:
        upgraded.unlink()
