"""`xpubench export triton`: a model as a Triton model repository (artifact + config.pbtxt)."""

from __future__ import annotations

import argparse
from pathlib import Path

from xpubench.cli.options import positive_int_list, require_serve_extra, shape_option
from xpubench.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model for another server (triton: a Triton model repository)",
                       description="Write a model's converted artifact with its configuration for a server.")
    targets = p.add_subparsers(dest="target", metavar="TARGET", required=True, parser_class=type(p))
    t = targets.add_parser(
        "triton", help="a Triton model repository: REPO/NAME/config.pbtxt and REPO/NAME/1/<artifact>",
        description="Convert MODEL as `xpubench run` would for --backend and --precision and write it as a "
        "Triton model repository, its config.pbtxt checked with Triton's own model-config proto.",
    )
    t.add_argument("model", metavar="MODEL", help="zoo name (xpubench zoo) or a .onnx/.tflite/.keras/.pt2 file")
    t.add_argument("--out", type=Path, required=True, metavar="REPO", help="the model repository folder")
    t.add_argument("--backend", default="onnxruntime", metavar="B",
                   help="onnxruntime (model.onnx), openvino (ONNX or IR) or tensorflow (a SavedModel) "
                   "(default: onnxruntime)")
    t.add_argument("--precision", default="fp32", metavar="P", help="fp32, fp16, int8, ... (default: fp32)")
    t.add_argument("--shape", type=shape_option, action="append", default=[], metavar="[NAME=]D,D,...",
                   help="the shape of one sample of an input with dynamic dimensions")
    t.add_argument("--name", default=None, metavar="NAME", help="the model's folder and name (default: its name)")
    t.add_argument("--max-batch", type=int, default=8, metavar="N", help="max_batch_size (default: 8)")
    t.add_argument("--max-queue-delay-us", type=int, default=0, metavar="U",
                   help="dynamic_batching.max_queue_delay_microseconds (default: 0)")
    t.add_argument("--preferred-batch", type=positive_int_list, default=(), metavar="N,...",
                   help="dynamic_batching.preferred_batch_size (default: none)")
    t.add_argument("--instances", type=int, default=1, metavar="K", help="instance_group count (default: 1)")
    t.add_argument("--max-queue-size", type=int, default=0, metavar="Q",
                   help="the queue policy's max_queue_size (default: 0, unbounded)")
    t.add_argument("--timeout-us", type=int, default=0, metavar="U",
                   help="the queue policy's default_timeout_microseconds (default: 0)")
    t.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    require_serve_extra("xpubench export triton")
    from xpubench.serve.policy import BatchingPolicy
    from xpubench.serve.triton_repo import export

    if args.instances < 1:
        raise UsageError(f"--instances must be >= 1, got {args.instances}")
    try:
        policy = BatchingPolicy(args.max_batch, tuple(args.preferred_batch), args.max_queue_delay_us,
                                args.max_queue_size, args.timeout_us)
    except ValueError as exc:
        raise UsageError(str(exc).replace("_", "-")) from None
    folder = export(args.model, args.out, args.backend, args.precision, policy, args.instances, args.name,
                    dict(args.shape))
    print(f"wrote {folder / 'config.pbtxt'} and {', '.join(p.name for p in sorted((folder / '1').iterdir()))} "
          f"in {folder / '1'}")
    return 0
