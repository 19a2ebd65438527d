"""`xpubench serve`: host one model behind the Open Inference Protocol (KServe v2), REST and gRPC."""

from __future__ import annotations

import argparse
import os
import sys

from xpubench.cli.options import pin_cpus, positive_int_list, require_serve_extra, shape_option
from xpubench.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a model over the Open Inference Protocol (Triton/KServe v2, REST and gRPC)",
        description="Serve MODEL on any backend, precision and device that `xpubench run` measures, with "
        "Triton's dynamic batching, until Ctrl-C or SIGTERM (then the requests in flight are answered).",
    )
    p.add_argument("model", metavar="MODEL", help="zoo name (xpubench zoo) or a .onnx/.tflite/.keras/.pt2 file")
    p.add_argument("--backend", default="onnxruntime", metavar="B",
                   help="the backend, optionally with options, e.g. litert:xnnpack=off (default: onnxruntime)")
    p.add_argument("--precision", default="fp32", metavar="P", help="fp32, fp16, int8, ... (default: fp32)")
    p.add_argument("--device", default=None, metavar="D", help="cpu, cuda, ... (default: the backend's first)")
    p.add_argument("--threads", type=int, default=1, metavar="T", help="intra-op threads per instance (default: 1)")
    p.add_argument("--shape", type=shape_option, action="append", default=[], metavar="[NAME=]D,D,...",
                   help="the shape of one sample of an input with dynamic dimensions")
    p.add_argument("--max-batch", type=int, default=8, metavar="N",
                   help="the most samples the dynamic batcher puts in one batch (default: 8)")
    p.add_argument("--max-queue-delay-us", type=int, default=0, metavar="U",
                   help="how long a batch that is not full waits for more requests, in microseconds (default: 0)")
    p.add_argument("--preferred-batch", type=positive_int_list, default=(), metavar="N,...",
                   help="batch sizes sent as soon as the queue reaches one (default: none)")
    p.add_argument("--instances", type=int, default=1, metavar="K",
                   help="model instances, each its own runtime and thread (default: 1)")
    p.add_argument("--max-queue-size", type=int, default=0, metavar="Q",
                   help="requests waiting at most; more are rejected at once (default: 0, unbounded)")
    p.add_argument("--timeout-us", type=int, default=0, metavar="U",
                   help="reject a request that waited longer in the queue, in microseconds (default: 0, none)")
    p.add_argument("--http-port", type=int, default=8000, metavar="P", help="REST port (default: 8000)")
    p.add_argument("--grpc-port", type=int, default=8001, metavar="P", help="gRPC port (default: 8001)")
    p.add_argument("--pin", default=None, metavar="CPUS",
                   help="run the server on these CPUs only, e.g. 0 or 0-1 (default: no pinning)")
    p.add_argument("--host", default="127.0.0.1", metavar="H", help="the address to bind (default: 127.0.0.1)")
    p.add_argument("--name", default=None, metavar="NAME",
                   help="the model's name in the protocol (default: the zoo name or the file's stem)")
    p.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    require_serve_extra("xpubench serve")
    from xpubench.run.matrix import parse_backend
    from xpubench.serve.model import ServeSpec
    from xpubench.serve.policy import BatchingPolicy
    from xpubench.serve.task import ServeTask

    for flag in ("threads", "instances"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    for flag in ("http_port", "grpc_port"):
        if not 0 < getattr(args, flag) < 65536:
            raise UsageError(f"--{flag.replace('_', '-')} must be a port number, got {getattr(args, flag)}")
    if args.http_port == args.grpc_port:
        raise UsageError(f"--http-port and --grpc-port are both {args.http_port}: give two ports")
    try:
        backend, options = parse_backend(args.backend)
        policy = BatchingPolicy(args.max_batch, tuple(args.preferred_batch), args.max_queue_delay_us,
                                args.max_queue_size, args.timeout_us)
    except ValueError as exc:
        raise UsageError(str(exc).replace("_", "-")) from None
    spec = ServeSpec(args.model, backend, options, args.precision, args.device, args.threads, args.instances,
                     policy, dict(args.shape), args.name)
    pin = pin_cpus(args.pin)
    if pin:
        os.sched_setaffinity(0, pin)  # before a runtime sizes its thread pools

    def say(line: str) -> None:
        print(f"xpubench serve: {line}", file=sys.stderr, flush=True)

    try:
        return ServeTask(spec, args.http_port, args.grpc_port, args.host).execute(say)
    except OSError as exc:
        raise UsageError(f"{exc}: is another server on that port? choose others with --http-port/--grpc-port") \
            from None
