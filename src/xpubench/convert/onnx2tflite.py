"""An ONNX model -> LiteRT (TFLite) in the study's four modes, and uint8 for the Edge TPU, through onnx2tf."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from xpubench.convert.graph import ConversionContext, converter
from xpubench.convert.keras import _to_tflite, native_output_silenced, quiet_tensorflow

REQUIRES = ("onnx2tf", "tf_keras", "onnx_graphsurgeon", "sng4onnx", "tensorflow")


def onnx_to_keras(src: Path, folder: Path) -> tuple[Any, Path]:
    """onnx2tf's Keras model (3-5D tensors turned channels-last) and the float32 flatbuffer it writes into
    `folder`. (Its SavedModel is not written for every graph: the quantised modes start from the Keras model.)"""
    quiet_tensorflow()
    import onnx2tf

    try:
        with native_output_silenced():
            model = onnx2tf.convert(input_onnx_file_path=str(src), output_folder_path=str(folder), non_verbose=True,
                                    copy_onnx_input_output_names_to_tflite=True)
    except SystemExit as exc:  # onnx2tf exits on an op it cannot convert
        raise RuntimeError(f"onnx2tf could not convert {src.name} (exit {exc.code})") from None
    found = folder / f"{src.stem}_float32.tflite"
    if model is None or not found.is_file():
        raise RuntimeError(f"onnx2tf wrote no float32 model for {src.name}")
    return model, found


def write_layout(src: Path, tflite: Path, dst: Path) -> Any:
    """Record beside `dst` how the flatbuffer `tflite` takes the ONNX model's inputs (order, layout) and gives
    its outputs, from its serving signature (named as the ONNX tensors) and the shapes on both sides."""
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    from xpubench.backends.tflite_layout import Layout, layout_path, permutation

    graph = onnx.load(str(src), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    interpreter = Interpreter(model_path=str(tflite))
    signature = next(iter(interpreter._get_full_signature_list().values()), {"inputs": {}, "outputs": {}})

    def side(values: list, details: list[dict], named: dict[str, int], forward: bool) -> tuple:
        positions = {d["index"]: i for i, d in enumerate(details)}
        found = []
        for order, value in enumerate(values):
            index = named.get(value.name, named.get(value.name.replace(".", "_").replace(":", "_")))
            pos = positions[index] if index in positions else order
            dims = value.type.tensor_type.shape.dim
            source = [d.dim_value if d.HasField("dim_value") else None for d in dims]
            model = [int(s) if s > 0 else None for s in details[pos].get("shape_signature", details[pos]["shape"])]
            perm = permutation(source, model)
            found.append((pos, perm if forward else tuple(int(i) for i in np.argsort(perm))))
        return tuple(found)

    inputs = [v for v in graph.input if v.name not in weights]
    layout = Layout(side(inputs, interpreter.get_input_details(), signature["inputs"], True),
                    side(list(graph.output), interpreter.get_output_details(), signature["outputs"], False))
    layout_path(dst).write_text(layout.to_json())
    return layout


def _register(precision: str) -> None:
    calibrated = precision in ("int8", "uint8")

    @converter("onnx:fp32", f"tflite:{precision}", calibrated=calibrated, requires=REQUIRES)
    def from_onnx(src: Path, dst: Path, ctx: ConversionContext) -> None:
        calibration = ctx.calibration_inputs() if calibrated else None
        with tempfile.TemporaryDirectory(prefix=".onnx2tf-", dir=dst.parent) as tmp:
            model, fp32 = onnx_to_keras(src, Path(tmp))
            if precision == "fp32":
                shutil.copyfile(fp32, dst)
            else:
                import tensorflow as tf

                samples = None
                if calibration is not None:  # in the Keras model's input order and layout
                    layout = write_layout(src, fp32, dst)
                    turned = [np.transpose(np.asarray(a, np.float32), perm)
                              for a, (_, perm) in zip(calibration, layout.inputs, strict=True)]
                    samples = _in_keras_order(src, model, turned)
                _to_tflite(tf.lite.TFLiteConverter.from_keras_model(model), dst, precision, samples)
        write_layout(src, dst, dst)


def _in_keras_order(src: Path, model: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Arrays in the ONNX inputs' order -> in the Keras model's (matched by name, else kept)."""
    import onnx

    graph = onnx.load(str(src), load_external_data=False).graph
    weights = {t.name for t in graph.initializer}
    by_name = dict(zip((v.name for v in graph.input if v.name not in weights), arrays, strict=True))
    names = [t.name.split(":")[0] for t in model.inputs]
    return [by_name[n] for n in names] if all(n in by_name for n in names) else arrays


for _precision in ("fp32", "int8-dynamic", "fp16", "int8", "uint8"):
    _register(_precision)
