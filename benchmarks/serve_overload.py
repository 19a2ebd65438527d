"""Past capacity for a minute: does `xpubench serve` reject at once, keep serving and keep its memory bounded?

A slow model (a stack of 2048-wide dense layers, several ms a call on one thread) is served with --max-batch 1, one
instance and a bounded queue; a closed loop finds its capacity; then an open loop offers `--factor` times that
for `--duration` seconds while the server's resident memory is sampled twice a second; then one client checks it
still answers, and SIGINT must end it with exit 0.

    python benchmarks/serve_overload.py [--factor 10] [--duration 60] [--queue 32]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from xpubench.run.ports import free_ports


def slow_model(path: Path, width: int = 2048, layers: int = 4) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, name = [], [], "x"
    for i in range(layers):
        weight = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
        nodes += [helper.make_node("MatMul", [name, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Relu", [f"m{i}"], [f"r{i}"])]
        name = f"r{i}"
    graph = helper.make_graph(nodes, "slow", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", width])],
                              [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", width])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)



def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(url: str, *options: str, out: Path) -> dict:
    command = [sys.executable, "-m", "xpubench", "load", url, "--model", "slow", *options, "--json", str(out),
               "--results", str(out.parent / "results")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if not out.exists():
        raise RuntimeError(f"{' '.join(command)}: {done.stderr[-1500:]}")
    return json.loads(out.read_text())["cells"][0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--queue", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xpubench-overload-") as tmp:
        folder = Path(tmp)
        slow_model(folder / "slow.onnx")
        http, grpc = free_ports(2)
        server = subprocess.Popen(
            [sys.executable, "-m", "xpubench", "serve", str(folder / "slow.onnx"), "--name", "slow", "--max-batch", "1",
             "--instances", "1", "--threads", "1", "--max-queue-size", str(args.queue), "--http-port", str(http),
             "--grpc-port", str(grpc)],
            stdout=subprocess.DEVNULL, stderr=open(folder / "server.log", "w"), env={**os.environ})  # noqa: SIM115
        url = f"http://127.0.0.1:{http}"
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((folder / "server.log").read_text()[-1500:]) from None
                time.sleep(0.5)
        try:
            closed = load(url, "--concurrency", "4", "--duration", "5", out=folder / "capacity.json")
            capacity = closed["scenario_result"]["throughput_rps"]
            rate = args.factor * capacity
            print(f"capacity (closed loop, 4 in flight): {capacity:.0f} req/s, p50 "
                  f"{closed['latency_ms']['median']:.2f} ms; offering {rate:.0f} req/s "
                  f"({args.factor:g}x) for {args.duration:g} s, queue bounded at {args.queue}")
            samples: list[tuple[float, float]] = []
            stop = threading.Event()

            def sample() -> None:
                began = time.monotonic()
                while not stop.is_set():
                    samples.append((time.monotonic() - began, rss_mb(server.pid)))
                    stop.wait(0.5)

            before = rss_mb(server.pid)
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            over = load(url, "--rate", f"{rate:.0f}", "--duration", f"{args.duration:g}", "--drain", "5",
                        out=folder / "overload.json")
            stop.set()
            sampler.join()
            after = load(url, "--concurrency", "1", "--duration", "3", out=folder / "after.json")
        finally:
            server.send_signal(signal.SIGINT)
            code = server.wait(timeout=60)
        result = over["scenario_result"]
        peak = max(mb for _, mb in samples)
        first = [mb for t, mb in samples if t < 10]
        last = [mb for t, mb in samples if t > max(t for t, _ in samples) - 10]
        print(f"overload: offered {result['offered']}, answered {result['served']}, errors (503 and others) "
              f"{result['errors']}, throughput {result['throughput_rps']:.0f} req/s; send lag p99 "
              f"{result['lag_ms']['p99']:.2f} ms; verdict: {result['verdict']}")
        print(f"server RSS: {before:.0f} MB before, peak {peak:.0f} MB during, first 10 s max {max(first):.0f} MB, "
              f"last 10 s max {max(last):.0f} MB")
        print(f"after: {after['scenario_result']['throughput_rps']:.0f} req/s at 1 client, "
              f"{after['scenario_result']['errors']} errors; the server exited {code} on SIGINT")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
