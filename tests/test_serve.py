"""`xpubench serve` as a user runs it: a real server process, driven by Triton's own clients and plain HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import run_cli
from xpubench.run.ports import free_ports
from xpubench.serve.batcher import DynamicBatcher, Request
from xpubench.serve.errors import QueueFull
from xpubench.serve.policy import BatchingPolicy

pytest.importorskip("tritonclient.grpc")
pytest.importorskip("uvicorn")

rng = np.random.default_rng(3)
READY_TIMEOUT_S = 120



class Served:
    """A running `xpubench serve` process and its two addresses."""

    def __init__(self, process: subprocess.Popen, http_port: int, grpc_port: int) -> None:
        self.process = process
        self.http = f"127.0.0.1:{http_port}"
        self.grpc = f"127.0.0.1:{grpc_port}"

    def post(self, path: str, body: dict | bytes, headers: dict | None = None) -> tuple[int, bytes, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(f"http://{self.http}{path}", data=data, headers=headers or {}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.http}{path}", timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


@contextlib.contextmanager
def serving(model: Path | str, *options: str):
    """Start `xpubench serve MODEL OPTIONS` on free ports, wait until it is ready, kill it at the end."""
    http_port, grpc_port = free_ports(2)
    process = subprocess.Popen(
        [sys.executable, "-m", "xpubench", "serve", str(model), "--http-port", str(http_port),
         "--grpc-port", str(grpc_port), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
    )
    served = Served(process, http_port, grpc_port)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited with {process.returncode}: {process.stderr.read()}")
            with contextlib.suppress(OSError):
                if served.get("/v2/health/ready")[0] == 200:
                    break
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        yield served
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def two_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX model of two inputs and two outputs: sum = a + b, prod = a * b, any batch."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["prod"])], "two",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 3, 4]) for n in ("a", "b")],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 3, 4]) for n in ("sum", "prod")],
    )
    path = tmp_path_factory.mktemp("two") / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def in_process(model: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_triton_clients_and_plain_http_get_the_runtimes_outputs(two_inputs: Path):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    a, b = (rng.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(2))
    want = in_process(two_inputs, {"a": a, "b": b})
    with serving(two_inputs, "--max-batch", "4") as server:
        # tritonclient.http: binary tensors both ways, then JSON both ways
        http = httpclient.InferenceServerClient(server.http)
        assert http.is_server_live() and http.is_model_ready("two")
        for binary in (True, False):
            inputs = [httpclient.InferInput(n, list(x.shape), "FP32") for n, x in (("a", a), ("b", b))]
            for i, x in zip(inputs, (a, b), strict=True):
                i.set_data_from_numpy(x, binary_data=binary)
            outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("sum", "prod")]
            result = http.infer("two", inputs, outputs=outputs)
            np.testing.assert_array_equal(result.as_numpy("sum"), want[0])
            np.testing.assert_array_equal(result.as_numpy("prod"), want[1])
            assert ("parameters" in result.get_response()["outputs"][0]) is binary
        assert http.get_model_metadata("two")["inputs"] == [
            {"name": n, "datatype": "FP32", "shape": [-1, 3, 4]} for n in ("a", "b")]
        config = http.get_model_config("two")
        assert config["max_batch_size"] == 4 and config["input"][0]["dims"] == [3, 4]

        # tritonclient.grpc: raw_input_contents
        grpc = grpcclient.InferenceServerClient(server.grpc)
        assert grpc.is_server_ready() and grpc.get_server_metadata().name == "xpubench"
        inputs = [grpcclient.InferInput(n, list(x.shape), "FP32") for n, x in (("a", a), ("b", b))]
        for i, x in zip(inputs, (a, b), strict=True):
            i.set_data_from_numpy(x)
        result = grpc.infer("two", inputs)
        np.testing.assert_array_equal(result.as_numpy("sum"), want[0])
        np.testing.assert_array_equal(result.as_numpy("prod"), want[1])
        assert grpc.get_model_config("two").config.dynamic_batching is not None
        assert [t.name for t in grpc.get_model_metadata("two").outputs] == ["sum", "prod"]

        # gRPC with typed contents instead of raw bytes, from the generated stub itself
        import grpc as grpc_lib
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc_lib.insecure_channel(server.grpc))
        request = service_pb2.ModelInferRequest(model_name="two")
        for n, x in (("a", a), ("b", b)):
            request.inputs.add(name=n, datatype="FP32", shape=[2, 3, 4]).contents.fp32_contents.extend(x.ravel())
        response = stub.ModelInfer(request)
        assert [o.name for o in response.outputs] == ["sum", "prod"] and list(response.outputs[0].shape) == [2, 3, 4]
        np.testing.assert_array_equal(np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 3, 4),
                                      want[0])

        # a plain HTTP client speaking the protocol's JSON, asking for one output
        status, body, _ = server.post("/v2/models/two/infer", {
            "id": "q1", "inputs": [{"name": n, "shape": [2, 3, 4], "datatype": "FP32", "data": x.ravel().tolist()}
                                   for n, x in (("a", a), ("b", b))],
            "outputs": [{"name": "prod"}]})
        answer = json.loads(body)
        assert status == 200 and answer["id"] == "q1" and [o["name"] for o in answer["outputs"]] == ["prod"]
        np.testing.assert_array_equal(np.array(answer["outputs"][0]["data"], np.float32).reshape(2, 3, 4), want[1])

        # the binary extension by hand: binary_data_output for every output
        header = json.dumps({"inputs": [
            {"name": n, "shape": [2, 3, 4], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
            for n, x in (("a", a), ("b", b))], "parameters": {"binary_data_output": True}}).encode()
        status, body, headers = server.post("/v2/models/two/infer", header + a.tobytes() + b.tobytes(),
                                            {"Inference-Header-Content-Length": str(len(header))})
        size = int(headers["Inference-Header-Content-Length"])
        assert status == 200 and len(body) == size + 2 * a.nbytes
        np.testing.assert_array_equal(np.frombuffer(body[size : size + a.nbytes], np.float32).reshape(2, 3, 4),
                                      want[0])

        # bad requests are one-line errors; the server goes on
        status, body, _ = server.post("/v2/models/two/infer", {"inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [0, 0, 0, 0]}]})
        assert status == 400 and "shape" in json.loads(body)["error"]
        assert server.get("/v2/models/nope")[0] == 404
        status, body, _ = server.post("/v2/models/two/infer", {"inputs": [
            {"name": n, "shape": [5, 3, 4], "datatype": "FP32", "data": [0.0] * 60} for n in ("a", "b")]})
        assert status == 400 and "--max-batch" in json.loads(body)["error"]

        stats = json.loads(server.get("/v2/models/two/stats")[1])["model_stats"][0]
        assert stats["inference_stats"]["success"]["count"] == 6  # 2 http client, 2 grpc, 2 plain
        assert stats["inference_count"] == 12 and {b["batch_size"] for b in stats["batch_stats"]} == {2}
        grpc_stats = grpc.get_inference_statistics("two").model_stats[0]
        assert grpc_stats.inference_stats.success.count == 6 and grpc_stats.execution_count == 6


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(relu_onnx: Path):
    import tritonclient.http as httpclient

    xs = [rng.standard_normal((1, 16)).astype(np.float32) for _ in range(16)]
    with serving(relu_onnx, "--max-batch", "8", "--max-queue-delay-us", "300000") as server:
        client = httpclient.InferenceServerClient(server.http, concurrency=16)
        pending = []
        for x in xs:
            i = httpclient.InferInput("in", [1, 16], "FP32")
            i.set_data_from_numpy(x)
            pending.append(client.async_infer("relu", [i]))
        for x, request in zip(xs, pending, strict=True):
            np.testing.assert_array_equal(request.get_result().as_numpy("out"), np.maximum(x, 0))
        stats = client.get_inference_statistics("relu")["model_stats"][0]
    assert stats["inference_count"] == 16
    formed = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}
    assert max(formed) > 1 and stats["execution_count"] < 16
    assert sum(size * count for size, count in formed.items()) == 16


def test_a_full_queue_rejects_at_once_and_the_server_serves_on(relu_onnx: Path):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    x = rng.standard_normal((1, 16)).astype(np.float32)
    # A long queue delay holds what is queued, so the queue of 2 is full after two requests.
    with serving(relu_onnx, "--max-queue-size", "2", "--max-queue-delay-us", "1500000") as server:
        grpc = grpcclient.InferenceServerClient(server.grpc)
        barrier = threading.Barrier(12)

        def over_http(_: int) -> str:
            body = {"inputs": [{"name": "in", "shape": [1, 16], "datatype": "FP32", "data": x.ravel().tolist()}]}
            barrier.wait()
            status, answer, _ = server.post("/v2/models/relu/infer", body)
            return "ok" if status == 200 else f"http {status}"

        def over_grpc(_: int) -> str:
            i = grpcclient.InferInput("in", [1, 16], "FP32")
            i.set_data_from_numpy(x)
            barrier.wait()
            try:
                out = grpc.infer("relu", [i]).as_numpy("out")
            except InferenceServerException as exc:
                return f"grpc {exc.status()}"
            return "ok" if np.array_equal(out, np.maximum(x, 0)) else "wrong"

        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(over_http, i) for i in range(6)] + [pool.submit(over_grpc, i) for i in range(6)]
            outcomes = [f.result() for f in futures]
        assert outcomes.count("ok") >= 2 and "wrong" not in outcomes
        assert set(outcomes) <= {"ok", "http 503", "grpc StatusCode.RESOURCE_EXHAUSTED"}
        assert "http 503" in outcomes and "grpc StatusCode.RESOURCE_EXHAUSTED" in outcomes

        # a request that waits past its own timeout is rejected, never run; then the server serves on
        http = httpclient.InferenceServerClient(server.http)
        i = httpclient.InferInput("in", [1, 16], "FP32")
        i.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException, match="timeout"):
            http.infer("relu", [i], timeout=100_000)
        np.testing.assert_array_equal(http.infer("relu", [i]).as_numpy("out"), np.maximum(x, 0))
        stats = http.get_inference_statistics("relu")["model_stats"][0]["inference_stats"]
        assert stats["fail"]["count"] == len(outcomes) - outcomes.count("ok") + 1  # rejected, and timed out
        assert stats["success"]["count"] == outcomes.count("ok") + 1


def test_sigint_answers_every_accepted_request_and_exits_0(relu_onnx: Path):
    xs = [rng.standard_normal((1, 16)).astype(np.float32) for _ in range(6)]
    # The queue delay holds the requests until Ctrl-C, which sends them at once.
    with serving(relu_onnx, "--max-batch", "8", "--max-queue-delay-us", "20000000") as server:

        def ask(x: np.ndarray) -> str:
            body = {"inputs": [{"name": "in", "shape": [1, 16], "datatype": "FP32", "data": x.ravel().tolist()}]}
            try:
                status, answer, _ = server.post("/v2/models/relu/infer", body)
            except ConnectionRefusedError:
                return "not accepted"
            out = np.array(json.loads(answer)["outputs"][0]["data"], np.float32) if status == 200 else None
            return "ok" if out is not None and np.array_equal(out, np.maximum(x, 0).ravel()) else f"{status}"

        with ThreadPoolExecutor(6) as pool:
            answers = pool.map(ask, xs)
            time.sleep(1.0)
            server.process.send_signal(signal.SIGINT)
            outcomes = list(answers)
        assert server.process.wait(timeout=60) == 0
    assert set(outcomes) <= {"ok", "not accepted"} and "ok" in outcomes


def test_another_runtime_serves_binary_tensors(relu_onnx: Path):
    pytest.importorskip("openvino")
    import tritonclient.http as httpclient

    x = rng.standard_normal((2, 16)).astype(np.float32)
    with serving(relu_onnx, "--backend", "openvino") as server:
        client = httpclient.InferenceServerClient(server.http)
        assert client.get_model_metadata("relu")["platform"] == "openvino"
        i = httpclient.InferInput("in", [2, 16], "FP32")
        i.set_data_from_numpy(x, binary_data=True)  # decoded as a read-only view of the request's bytes
        np.testing.assert_array_equal(client.infer("relu", [i]).as_numpy("out"), np.maximum(x, 0))


@pytest.mark.slow
def test_a_zoo_model_is_served_as_the_sweep_converts_it():
    import tritonclient.grpc as grpcclient

    from xpubench.models import resolve

    workload = resolve("dense1:tiny", say=lambda line: None)  # trained (seconds) and converted once, cached
    artifact = workload.artifact("onnx:fp32")
    x = workload.x_eval[:3]
    with serving("dense1:tiny", "--threads", "1", "--instances", "2") as server:
        grpc = grpcclient.InferenceServerClient(server.grpc)
        meta = grpc.get_model_metadata("dense1:tiny")
        assert list(meta.inputs[0].shape) == [-1, 28, 28, 1] and meta.platform == "onnxruntime_onnx"
        i = grpcclient.InferInput(meta.inputs[0].name, list(x.shape), "FP32")
        i.set_data_from_numpy(x.astype(np.float32))
        got = grpc.infer("dense1:tiny", [i]).as_numpy(meta.outputs[0].name)
        assert grpc.get_model_config("dense1:tiny").config.instance_group[0].count == 2
    want = in_process(artifact, {meta.inputs[0].name: x.astype(np.float32)})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_export_triton_writes_a_repository_that_triton_s_proto_reads(relu_onnx: Path, tmp_path: Path):
    from tritonclient.grpc import model_config_pb2 as mc

    from xpubench.serve.config import parse_config

    out = run_cli("export", "triton", str(relu_onnx), "--out", str(tmp_path / "repo"), "--max-batch", "16",
                  "--preferred-batch", "4,8", "--max-queue-delay-us", "500", "--instances", "2")
    assert out.returncode == 0, out.stderr
    folder = tmp_path / "repo" / "relu"
    assert (folder / "1" / "model.onnx").read_bytes() == relu_onnx.read_bytes()
    config = parse_config((folder / "config.pbtxt").read_text())
    assert config.name == "relu" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 16
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("in", mc.TYPE_FP32, [16])]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [("out", mc.TYPE_FP32, [16])]
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].count == 2 and config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    # a model of one fixed batch size cannot be batched: max_batch_size 0, the batch in the dims
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["in"], ["out"])], "fixed",
                              [helper.make_tensor_value_info("in", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "fixed.onnx")
    out = run_cli("export", "triton", str(tmp_path / "fixed.onnx"), "--out", str(tmp_path / "repo"))
    assert out.returncode == 0, out.stderr
    config = parse_config((tmp_path / "repo" / "fixed" / "config.pbtxt").read_text())
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [1, 16]
    assert not config.HasField("dynamic_batching")

    bad = run_cli("export", "triton", str(relu_onnx), "--out", str(tmp_path / "r2"), "--backend", "litert")
    assert bad.returncode == 2 and "Triton runs no artifact of litert" in bad.stderr


# The batcher alone: which batch a free instance gets (no threads wait: each batch is due at once).


def _request(size: int) -> Request:
    return Request([np.zeros((size, 2), np.float32)], lambda outputs, error: None)


def test_the_batcher_sends_a_preferred_size_or_a_full_batch_at_once():
    hold = 60_000_000  # a queue delay no test waits for
    batcher = DynamicBatcher(BatchingPolicy(max_batch=8, preferred=(2, 4), max_queue_delay_us=hold))
    for size in (1, 1, 1, 1, 1):
        batcher.submit(_request(size))
    assert [r.size for r in batcher.next_batch()] == [1, 1, 1, 1]  # the largest preferred size reached
    batcher = DynamicBatcher(BatchingPolicy(max_batch=4, max_queue_delay_us=hold))
    for size in (3, 2, 2):
        batcher.submit(_request(size))
    assert [r.size for r in batcher.next_batch()] == [3]  # the next one does not fit: full
    assert [r.size for r in batcher.next_batch()] == [2, 2]
    batcher = DynamicBatcher(BatchingPolicy(max_batch=8, max_queue_delay_us=hold))
    for request in (_request(1), _request(1), Request([np.zeros((1, 3), np.float32)], lambda o, e: None)):
        batcher.submit(request)
    assert [r.size for r in batcher.next_batch()] == [1, 1]  # samples of another shape start another batch
    batcher = DynamicBatcher(BatchingPolicy(max_batch=4, max_queue_delay_us=0))
    batcher.submit(_request(1))
    assert len(batcher.next_batch()) == 1  # no delay: what is there goes


def test_the_batcher_rejects_when_full_and_drains_when_closed():
    batcher = DynamicBatcher(BatchingPolicy(max_batch=8, max_queue_delay_us=60_000_000, max_queue_size=2))
    batcher.submit(_request(1))
    batcher.submit(_request(1))
    with pytest.raises(QueueFull):
        batcher.submit(_request(1))
    batcher.close()
    assert len(batcher.next_batch()) == 2 and batcher.next_batch() is None
