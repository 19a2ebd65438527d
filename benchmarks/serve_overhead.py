"""What serving adds: batch-1 p50 latency of one model over gRPC and REST on loopback (tritonclient,
one client, one request at a time) against the same backend's in-process p50 on the same artifact.

Usage: python benchmarks/serve_overhead.py [MODEL] [--backend B] [--requests N] [--apart]
(default: dense1:tiny on onnxruntime, 2000 requests per transport). The server runs as a user
starts it (`xpubench serve`, 1 instance, 1 thread, max batch 8, no queue delay) in its own process.
--apart: the server on one half of the cores (`xpubench serve --pin`), this process (the client and the
in-process measurement) on the other, as `xpubench study sonic` runs them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from xpubench.backends import get_backend
from xpubench.hardware.host import allowed_cpus
from xpubench.models import resolve
from xpubench.models.zoo import lookup
from xpubench.run.pins import format_cpus, halves
from xpubench.run.ports import free_ports
from xpubench.serve.model import serving_kind

WARMUP = 200
EVERY_CPU = allowed_cpus()



def p50_us(call, inputs: list, count: int) -> float:
    for i in range(WARMUP):
        call(inputs[i % len(inputs)])
    samples = []
    for i in range(count):
        start = time.perf_counter_ns()
        call(inputs[i % len(inputs)])
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e3


@contextlib.contextmanager
def server(model: str, backend: str, pin: tuple[int, ...] | None):
    http_port, grpc_port = free_ports(2)
    pinned = ["--pin", format_cpus(pin)] if pin else []
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, EVERY_CPU)  # the server is started where it may take its own CPUs
    try:
        process = subprocess.Popen([sys.executable, "-m", "xpubench", "serve", model, "--backend", backend,
                                    "--http-port", str(http_port), "--grpc-port", str(grpc_port), *pinned],
                                   env=os.environ.copy())
    finally:
        os.sched_setaffinity(0, mine)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            time.sleep(0.2)
        else:
            raise SystemExit("the server did not become ready")
        yield f"127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}"
    finally:
        process.terminate()
        process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="dense1:tiny")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--apart", action="store_true", help="the server and this process on separate cores")
    args = parser.parse_args()
    server_cpus, client_cpus = halves(allowed_cpus()) if args.apart else (None, None)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)

    backend_cls = get_backend(args.backend)
    backend_cls.claim_process(1)
    workload = resolve(args.model, say=lambda line: print(line, file=sys.stderr))
    artifact = workload.artifact(serving_kind(backend_cls, "fp32", {}, workload))
    samples = workload.fidelity_inputs()
    inputs = [[a[i : i + 1] for a in samples] for i in range(min(64, len(samples[0])))]
    backend = backend_cls(artifact, threads=1)
    prepared = [backend.prepare(x) for x in inputs]
    names = [s.name for s in backend.inputs]
    local = p50_us(backend.infer, prepared, args.requests)
    backend.close()

    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    model = args.model if lookup(args.model) else Path(args.model).stem  # the name the server gives it
    with server(args.model, args.backend, server_cpus) as (http_address, grpc_address):
        http = httpclient.InferenceServerClient(http_address)
        grpc = grpcclient.InferenceServerClient(grpc_address)

        def grpc_call(x: list[np.ndarray]) -> None:
            tensors = [grpcclient.InferInput(n, list(a.shape), "FP32") for n, a in zip(names, x, strict=True)]
            for t, a in zip(tensors, x, strict=True):
                t.set_data_from_numpy(a)
            grpc.infer(model, tensors)

        def http_call(x: list[np.ndarray]) -> None:
            tensors = [httpclient.InferInput(n, list(a.shape), "FP32") for n, a in zip(names, x, strict=True)]
            for t, a in zip(tensors, x, strict=True):
                t.set_data_from_numpy(a, binary_data=True)
            http.infer(model, tensors)

        over_grpc = p50_us(grpc_call, inputs, args.requests)
        over_http = p50_us(http_call, inputs, args.requests)
        stats = http.get_inference_statistics(model)["model_stats"][0]
    infer = stats["inference_stats"]["compute_infer"]
    queue = stats["inference_stats"]["queue"]
    print(json.dumps({
        "model": args.model, "backend": args.backend, "requests": args.requests,
        "server_cpus": server_cpus, "client_cpus": client_cpus,
        "in_process_p50_us": round(local, 1), "grpc_p50_us": round(over_grpc, 1), "http_p50_us": round(over_http, 1),
        "server_compute_infer_mean_us": round(infer["ns"] / infer["count"] / 1e3, 1),
        "server_queue_mean_us": round(queue["ns"] / queue["count"] / 1e3, 1),
    }, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
