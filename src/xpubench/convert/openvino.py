"""ONNX float32 -> OpenVINO IR int8, post-training quantised by NNCF on calibration inputs."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from xpubench.convert.graph import ConversionContext, converter
from xpubench.convert.keras import native_output_silenced

MAX_CALIBRATION_SAMPLES = 300  # NNCF's own default subset size


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs INFO lines and draws rich progress bars on sys.stdout (which need not be file
    descriptor 1, e.g. under a capturing caller), OpenVINO may print from C++: silence both, and
    restore NNCF's log level afterwards."""
    import nncf
    from nncf.common.logging import nncf_logger

    level = nncf_logger.level
    nncf.set_log_level(logging.ERROR)
    try:
        with (
            native_output_silenced(),
            open(os.devnull, "w") as devnull,
            contextlib.redirect_stdout(devnull),
            contextlib.redirect_stderr(devnull),
        ):
            yield
    finally:
        nncf.set_log_level(level)


@converter("onnx:fp32", "openvino:int8", calibrated=True, requires=("openvino", "nncf"))
def onnx_to_openvino_int8(src: Path, dst: Path, ctx: ConversionContext) -> None:
    """NNCF's post-training quantisation with its default preset (performance: symmetric weights per
    channel, int8/uint8 activations, fast bias correction), saved as an IR with int8 weights,
    float32 scales and FakeQuantize nodes that the CPU plugin fuses into integer kernels. Two
    advanced settings differ from NNCF's defaults, for reasons given below.

    The calibration samples are fed one at a time, or in groups of the model's batch where the
    ONNX fixes it; a dynamic batch dimension stays dynamic in the IR.
    """
    import nncf
    import numpy as np
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    model = ov.Core().read_model(str(src))
    first = model.inputs[0].get_partial_shape()
    batch = first[0].get_length() if first.rank.is_static and len(first) and first[0].is_static else 1
    arrays = [
        np.ascontiguousarray(a, dtype=i.get_element_type().to_dtype())
        for i, a in zip(model.inputs, ctx.calibration_inputs(), strict=True)
    ]
    starts = range(0, len(arrays[0]) - batch + 1, batch)[:MAX_CALIBRATION_SAMPLES]
    groups = [tuple(a[i : i + batch] for a in arrays) for i in starts]
    if not groups:
        raise ValueError(f"int8 calibration needs at least {batch} samples; got {len(arrays[0])}")
    # OpenVINO takes a list of arrays in input order; one input is passed bare.
    dataset = nncf.Dataset(groups, (lambda g: g[0]) if len(arrays) == 1 else list)
    # Weights in 7 bits (OverflowFix.ENABLE): without VNNI (AVX2 only, as on this project's CPUs),
    # the CPU plugin multiplies u8 activations by i8 weights with vpmaddubsw, whose int16 pair sums
    # saturate. NNCF's default fixes the first convolution only, so a dense model's MatMuls saturate:
    # the zoo's dense1 lost 13x in fidelity (max |diff| from float32 0.178, 0.0135 with the fix).
    # On VNNI CPUs the fix costs one bit of weight precision.
    # Activation ranges: the global min/max over the calibration set, as ONNX Runtime's and LiteRT's
    # calibrators take them, not NNCF's default mean of per-sample extremes: fed one sample at a time,
    # that clips every tensor with few elements per sample (a 16-feature input and the 8-wide sums
    # after it: 17 % rms error against 1.4 %); on the zoo's digits models both give the same accuracy.
    advanced = AdvancedQuantizationParameters(
        overflow_fix=OverflowFix.ENABLE,
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
    )
    with _quiet_nncf():
        quantised = nncf.quantize(model, dataset, subset_size=len(groups), advanced_parameters=advanced)
    ov.save_model(quantised, str(dst), compress_to_fp16=False)
