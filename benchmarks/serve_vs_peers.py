"""The same ONNX model served by xpubench, by a real Triton (nvidia-pytriton 0.7.0) and by MLServer (adaptive batching
on), loaded by the same client (`xpubench load`, gRPC, closed loop), compared at each peer's best batching settings
and at an equal p99 bound.

Usage: python benchmarks/serve_vs_peers.py [--peers xpubench,pytriton,mlserver] [--concurrency 1,4,16,32]
       [--duration 4] [--p99-ms 50] [--cache DIR]
Each peer is installed on demand into a virtual environment of its own under the cache folder (`python -m venv`,
pip install there; minutes the first time; a folder with its `.installed` marker is reused) and is never a
dependency of xpubench or its tests. The model: a dense
network 256 -> 2048 -> 2048 -> 10 (ReLU), written here. Every server runs one instance on one thread, max batch 32,
queue delay 2 ms: the best batching settings measured for this model on 2 cores (batches of 1 are 3-4x slower
per sample).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import numpy as np

from xpubench.run.ports import free_ports

HERE = Path(__file__).resolve().parent
PEERS = {"pytriton": ["nvidia-pytriton==0.7.0", "onnxruntime"], "mlserver": ["mlserver", "onnxruntime"]}
MAX_BATCH, DELAY_US = 32, 2000



def dense_onnx(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    dims, nodes, inits, x = [256, 2048, 2048, 10], [], [], "x"
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        last = i == len(dims) - 2
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], ["scores" if last else f"g{i}"]))
        if not last:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [f"r{i}"]))
            x = f"r{i}"
    graph = helper.make_graph(nodes, "dense", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 256])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def venv(cache: Path, peer: str) -> Path:
    """The peer's own environment, made and installed once."""
    folder = cache / peer
    python = folder / "venv" / "bin" / "python"
    marker = folder / ".installed"
    if not marker.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(folder / "venv")], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS[peer]], check=True)
        marker.touch()
    return python


PYTRITON = f"""
MAX_BATCH, DELAY_US = {MAX_BATCH}, {DELAY_US}
import sys, numpy as np, onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor, DynamicBatcher
from pytriton.triton import Triton, TritonConfig
options = ort.SessionOptions(); options.intra_op_num_threads = 1; options.inter_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
@batch
def infer(x):
    return {{"scores": session.run(None, {{"x": x}})[0]}}
config = TritonConfig(http_port=int(sys.argv[2]), grpc_port=int(sys.argv[3]), metrics_port=int(sys.argv[4]))
with Triton(config=config) as triton:
    triton.bind("dense", infer, inputs=[Tensor(name="x", dtype=np.float32, shape=(256,))],
                outputs=[Tensor(name="scores", dtype=np.float32, shape=(10,))],
                config=ModelConfig(max_batch_size=MAX_BATCH,
                                   batcher=DynamicBatcher(max_queue_delay_microseconds=DELAY_US)))
    triton.serve()
"""

MLSERVER_RUNTIME = """
import numpy as np, onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
class OnnxDense(MLModel):
    async def load(self):
        options = ort.SessionOptions(); options.intra_op_num_threads = 1; options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.settings.parameters.uri, options, providers=["CPUExecutionProvider"])
        return True
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        scores = self.session.run(None, {"x": x})[0]
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("scores", scores)])
"""


@contextlib.contextmanager
def started(command: list[str], http_port: int, env: dict | None = None, cwd: Path | None = None):
    log = open(Path(cwd or ".") / "server.log", "w")  # noqa: SIM115
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env or os.environ.copy(),
                               cwd=cwd, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}: see {log.name}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=5) as r:
                    if r.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not ready within 300 s: see {log.name}")
            time.sleep(0.5)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 2)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
        log.close()


def serve(peer: str, model: Path, work: Path, cache: Path):
    http, grpc, metrics = free_ports(3)  # metrics: PyTriton's and MLServer's metrics endpoint
    if peer == "xpubench":
        command = [sys.executable, "-m", "xpubench", "serve", str(model), "--http-port", str(http), "--grpc-port",
                   str(grpc), "--max-batch", str(MAX_BATCH), "--max-queue-delay-us", str(DELAY_US)]
        return started(command, http, cwd=work), grpc
    python = venv(cache, peer)
    if peer == "pytriton":
        (work / "pytriton_server.py").write_text(PYTRITON)
        env = {**os.environ, "LD_LIBRARY_PATH": sysconfig.get_config_var("LIBDIR") or ""}
        command = [str(python), "pytriton_server.py", str(model), str(http), str(grpc), str(metrics)]
        return started(command, http, env=env, cwd=work), grpc
    folder = work / "mlserver"
    (folder / "dense").mkdir(parents=True, exist_ok=True)
    (folder / "onnx_dense.py").write_text(MLSERVER_RUNTIME)
    (folder / "settings.json").write_text(json.dumps({"http_port": http, "grpc_port": grpc, "metrics_port":
                                                      metrics, "parallel_workers": 0}))
    # The tensors' metadata: a client of the protocol (our load generator, perf_analyzer) reads the inputs it must
    # send from `GET /v2/models/dense`, and MLServer states there only what model-settings.json declares.
    (folder / "dense" / "model-settings.json").write_text(json.dumps({
        "name": "dense", "implementation": "onnx_dense.OnnxDense", "max_batch_size": MAX_BATCH,
        "max_batch_time": DELAY_US / 1e6, "parameters": {"uri": str(model)},
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 256]}],
        "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 10]}]}))
    command = [str(python.parent / "mlserver"), "start", "."]
    return started(command, http, cwd=folder, env={**os.environ, "PYTHONPATH": str(folder)}), grpc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="xpubench,pytriton,mlserver")
    parser.add_argument("--concurrency", default="1,4,16,32")
    parser.add_argument("--duration", default="4")
    parser.add_argument("--p99-ms", type=float, default=50.0)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "xpubench" / "peers")
    parser.add_argument("--work", type=Path, default=Path("serve-vs-peers"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = dense_onnx(args.work.resolve() / "dense.onnx")
    found: dict[str, list[dict] | str] = {}
    for peer in args.peers.split(","):
        try:
            server, grpc = serve(peer, model, args.work.resolve(), args.cache)
            with server:
                out = args.work / f"{peer}.json"
                done = subprocess.run([sys.executable, "-m", "xpubench", "load", f"grpc://127.0.0.1:{grpc}", "--model",
                                       "dense", "--concurrency", args.concurrency, "--duration", args.duration,
                                       "--results", str(args.work / "results"), "--json", str(out)],
                                      capture_output=True, text=True)
                print(done.stderr, end="")
                found[peer] = json.loads(out.read_text())["cells"] if out.exists() else done.stderr.strip()[-300:]
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            found[peer] = f"{type(exc).__name__}: {exc}"
    print(f"\n{'peer':<10} {'N':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'avg batch':>9}")
    for peer, rows in found.items():
        if isinstance(rows, str):
            print(f"{peer:<10} not measured: {rows}")
            continue
        for r in rows:
            sr = r.get("scenario_result") or {}
            if r["status"] != "ok":
                print(f"{peer:<10} {r['options']}: {r['reason']}")
                continue
            batch = (sr.get("server") or {}).get("avg_batch")
            print(f"{peer:<10} {sr['concurrency']:>4} {sr['throughput_rps']:>8.4g} {sr['p50_ms']:>8.3g} "
                  f"{sr['p99_ms']:>8.3g} {batch if batch is None else round(batch, 2)!s:>9}")
        within = [r["scenario_result"] for r in rows if r["status"] == "ok"
                  and r["scenario_result"]["p99_ms"] <= args.p99_ms]
        best = max(within, key=lambda s: s["throughput_rps"], default=None)
        print(f"{peer:<10} best at p99 <= {args.p99_ms:g} ms: " + (
            f"{best['throughput_rps']:.4g} req/s (N={best['concurrency']})" if best else "no level"))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent / "src"))
    raise SystemExit(main())
