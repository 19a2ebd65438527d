"""A full-integer uint8 LiteRT model -> an Edge TPU model, compiled by Coral's `edgetpu_compiler`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from xpubench.convert.graph import ConversionContext, converter


@converter("tflite:uint8", "edgetpu:uint8", requires=("bin:edgetpu_compiler",))
def compile_for_edgetpu(src: Path, dst: Path, ctx: ConversionContext) -> None:
    """The compiler writes `<stem>_edgetpu.tflite` (and a log) into its output folder; ops it cannot
    map stay on the CPU, which the backend reports as the delegated fraction."""
    done = subprocess.run(
        ["edgetpu_compiler", "--out_dir", str(dst.parent), "--show_operations", str(src)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise RuntimeError(f"edgetpu_compiler failed: {last[-1] if last else done.returncode}")
    (dst.parent / f"{src.stem}_edgetpu.tflite").replace(dst)
    # A model converted from ONNX takes its inputs in the layout recorded beside it: so does the compiled one.
    from xpubench.backends.tflite_layout import layout_path

    if layout_path(src).is_file():
        layout_path(dst).write_text(layout_path(src).read_text())
