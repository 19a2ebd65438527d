"""Client backends: one per protocol, built on tritonclient. The load generator knows the server only
through this interface (perf_analyzer's ClientBackend), so it drives xpubench, Triton, MLServer or KServe.

A client times its own side of each request as perf_analyzer names it: `send` is preparing the request in
the client (the tensors serialised into the protocol's form), `recv` is decoding the answer's outputs; the
call in between (transfer both ways and the server's whole time) is the rest of the latency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np

from xpubench.errors import UsageError

PROTOCOLS = ("http", "grpc")
NETWORK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Endpoint:
    """Where the server is: its protocol and host:port (no scheme)."""

    protocol: str
    address: str

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @classmethod
    def parse(cls, url: str, protocol: str | None = None) -> Endpoint:
        """`http://h:p`, `grpc://h:p` or `h:p` (then `protocol`, default http)."""
        parts = urlsplit(url if "://" in url else f"//{url}")
        scheme = parts.scheme or None
        if scheme not in (None, *PROTOCOLS, "https"):
            raise UsageError(f"{url}: give an http:// or grpc:// address, or HOST:PORT with --protocol")
        if scheme == "https":
            raise UsageError(f"{url}: TLS is not supported by the load generator; give http:// or grpc://")
        if scheme and protocol and scheme != protocol:
            raise UsageError(f"{url} is a {scheme} address but --protocol is {protocol}: give one of them")
        if not parts.hostname or parts.port is None:
            raise UsageError(f"{url}: give the server's host and port, e.g. 127.0.0.1:8000")
        return cls(scheme or protocol or "http", f"{parts.hostname}:{parts.port}")

    def url(self) -> str:
        return f"{self.protocol}://{self.address}"


@dataclass(frozen=True)
class TensorSpec:
    """An input or output as the server's metadata states it (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Timed:
    """One request's client-side times, ns."""

    send_ns: int
    recv_ns: int


class ClientBackend(Protocol):
    """What the generator asks of a server: health, metadata and config, one request, statistics."""

    def ready(self, model: str) -> bool: ...

    def inputs(self, model: str) -> tuple[list[TensorSpec], list[TensorSpec]]: ...

    def config(self, model: str) -> dict[str, Any] | None: ...

    def statistics(self, model: str) -> dict[str, Any] | None: ...

    def infer(self, model: str, arrays: list[np.ndarray], inputs: list[TensorSpec],
              outputs: list[str]) -> Timed: ...

    def close(self) -> None: ...


def connect(endpoint: Endpoint) -> ClientBackend:
    """A client of the endpoint's protocol (one per thread: tritonclient's clients are not thread-safe)."""
    return HttpClient(endpoint.address) if endpoint.protocol == "http" else GrpcClient(endpoint.address)


class HttpClient:
    """REST with the binary tensor extension both ways."""

    def __init__(self, address: str) -> None:
        import tritonclient.http as http

        self._http = http
        self._client = http.InferenceServerClient(address, connection_timeout=NETWORK_TIMEOUT_S,
                                                  network_timeout=NETWORK_TIMEOUT_S)

    def ready(self, model: str) -> bool:
        return bool(self._client.is_server_ready() and self._client.is_model_ready(model))

    def inputs(self, model: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
        meta = self._client.get_model_metadata(model)
        return _specs(meta.get("inputs", [])), _specs(meta.get("outputs", []))

    def config(self, model: str) -> dict[str, Any] | None:
        try:
            return dict(self._client.get_model_config(model))
        except Exception:  # a server without the model-configuration extension
            return None

    def statistics(self, model: str) -> dict[str, Any] | None:
        try:
            return _model_stats(self._client.get_inference_statistics(model))
        except Exception:  # a server without the statistics extension
            return None

    def infer(self, model: str, arrays: list[np.ndarray], inputs: list[TensorSpec], outputs: list[str]) -> Timed:
        http = self._http
        t0 = time.perf_counter_ns()
        request = []
        for spec, array in zip(inputs, arrays, strict=True):
            tensor = http.InferInput(spec.name, list(array.shape), spec.datatype)
            tensor.set_data_from_numpy(array, binary_data=True)
            request.append(tensor)
        wanted = [http.InferRequestedOutput(name, binary_data=True) for name in outputs]
        t1 = time.perf_counter_ns()
        result = self._client.infer(model, request, outputs=wanted)
        t2 = time.perf_counter_ns()
        for name in outputs:
            result.as_numpy(name)
        return Timed(t1 - t0, time.perf_counter_ns() - t2)

    def close(self) -> None:
        self._client.close()


class GrpcClient:
    """GRPCInferenceService with raw_input_contents."""

    def __init__(self, address: str) -> None:
        import tritonclient.grpc as grpc

        self._grpc = grpc
        self._client = grpc.InferenceServerClient(address)

    def ready(self, model: str) -> bool:
        return bool(self._client.is_server_ready() and self._client.is_model_ready(model))

    def inputs(self, model: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
        meta = self._client.get_model_metadata(model, as_json=True)
        return _specs(meta.get("inputs", [])), _specs(meta.get("outputs", []))

    def config(self, model: str) -> dict[str, Any] | None:
        try:
            return _numbers(self._client.get_model_config(model, as_json=True).get("config", {}))
        except Exception:
            return None

    def statistics(self, model: str) -> dict[str, Any] | None:
        try:
            return _model_stats(_numbers(self._client.get_inference_statistics(model, as_json=True)))
        except Exception:
            return None

    def infer(self, model: str, arrays: list[np.ndarray], inputs: list[TensorSpec], outputs: list[str]) -> Timed:
        grpc = self._grpc
        t0 = time.perf_counter_ns()
        request = []
        for spec, array in zip(inputs, arrays, strict=True):
            tensor = grpc.InferInput(spec.name, list(array.shape), spec.datatype)
            tensor.set_data_from_numpy(array)
            request.append(tensor)
        wanted = [grpc.InferRequestedOutput(name) for name in outputs]
        t1 = time.perf_counter_ns()
        result = self._client.infer(model, request, outputs=wanted, client_timeout=NETWORK_TIMEOUT_S)
        t2 = time.perf_counter_ns()
        for name in outputs:
            result.as_numpy(name)
        return Timed(t1 - t0, time.perf_counter_ns() - t2)

    def close(self) -> None:
        self._client.close()


def _specs(entries: list[dict[str, Any]]) -> list[TensorSpec]:
    return [TensorSpec(e["name"], e["datatype"], tuple(int(d) for d in e.get("shape", []))) for e in entries]


def _model_stats(answer: dict[str, Any]) -> dict[str, Any] | None:
    entries = answer.get("model_stats") or []
    return entries[0] if entries else None


def _numbers(value: Any) -> Any:
    """gRPC's JSON form writes 64-bit integers as strings: make them numbers again."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


def numpy_dtype(datatype: str) -> Any:
    from tritonclient.utils import triton_to_np_dtype

    found = triton_to_np_dtype(datatype)
    if found is None or datatype == "BYTES":
        raise UsageError(f"the load generator sends numeric tensors only; this model takes {datatype}")
    return found


def request_pool(inputs: list[TensorSpec], batch: int, batching: bool, seed: int,
                 size: int = 16) -> list[list[np.ndarray]]:
    """`size` distinct requests of `batch` samples (never one pre-filled tensor): the batch first where the server
    batches, each other dimension as the metadata states it."""
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(size):
        arrays = []
        for spec in inputs:
            dims = list(spec.shape[1:] if batching else spec.shape)
            if any(d < 0 for d in dims):
                raise UsageError(f"input {spec.name!r} has a dynamic dimension {list(spec.shape)}: the load "
                                 "generator needs the server to state every dimension but the batch")
            shape = [batch, *dims] if batching else dims
            dtype = np.dtype(numpy_dtype(spec.datatype))
            if dtype.kind == "f":
                arrays.append(rng.standard_normal(shape).astype(dtype))
            elif dtype.kind == "b":
                arrays.append(rng.integers(0, 2, shape).astype(dtype))
            else:
                arrays.append(rng.integers(0, 100, shape).astype(dtype))
        pool.append(arrays)
    return pool
