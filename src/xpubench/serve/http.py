"""The Open Inference Protocol over REST: a bare ASGI app for uvicorn (httptools), with Triton's
binary tensor, statistics and model configuration extensions.

No web framework and no pydantic: the hot path is one json.loads, np.frombuffer per binary
input, and one send.
"""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from xpubench.serve.errors import InvalidInput, ServeError, UnknownModel
from xpubench.serve.tensors import datatype_name, from_bytes, from_list

if TYPE_CHECKING:
    from xpubench.serve.server import ModelServer

HEADER_LENGTH = "inference-header-content-length"
_JSON = [(b"content-type", b"application/json")]


class InferenceApp:
    """ASGI application serving the models of one ModelServer."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            status, body, headers = await self._route(scope, receive)
        except ServeError as exc:
            status, body, headers = exc.http_status, _dumps({"error": str(exc)}), _JSON
        except Exception as exc:  # a bug of ours answers 500 with its message, and the server goes on
            status, body, headers = 500, _dumps({"error": f"{type(exc).__name__}: {exc}"}), _JSON
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, scope: dict, receive: Any) -> tuple[int, bytes, list]:
        method = scope["method"]
        parts = scope["path"].strip("/").split("/")
        server = self.server
        if parts[0] != "v2":
            return _not_found(scope["path"])
        rest = parts[1:]
        if method == "GET":
            if not rest or rest == [""]:
                return 200, _dumps(server.metadata()), _JSON
            if rest == ["health", "live"]:
                return (200 if server.live else 503), b"", _JSON
            if rest == ["health", "ready"]:
                return (200 if server.ready else 503), b"", _JSON
            if rest == ["models", "stats"]:
                return 200, _dumps({"model_stats": [m.stats.as_dict() for m in server.models.values()]}), _JSON
        if len(rest) < 2 or rest[0] != "models":
            return _not_found(scope["path"])
        model = server.model(rest[1])
        tail = rest[2:]
        if len(tail) >= 2 and tail[0] == "versions":
            if tail[1] != model.version:
                raise UnknownModel(f"model {model.name} has no version {tail[1]} (it has {model.version})")
            tail = tail[2:]
        if method == "POST" and tail == ["infer"]:
            return await self._infer(model, scope, await _read_body(receive))
        if method != "GET":
            return _not_found(scope["path"])
        if not tail:
            return 200, _dumps(model.metadata()), _JSON
        if tail == ["ready"]:
            return (200 if model.ready else 503), b"", _JSON
        if tail == ["config"]:
            from google.protobuf import json_format

            config = json_format.MessageToDict(model.config(), preserving_proto_field_name=True)
            return 200, _dumps(_int64_as_numbers(config)), _JSON
        if tail == ["stats"]:
            return 200, _dumps({"model_stats": [model.stats.as_dict()]}), _JSON
        return _not_found(scope["path"])

    async def _infer(self, model: Any, scope: dict, body: bytes) -> tuple[int, bytes, list]:
        headers = dict(scope["headers"])
        encoding = headers.get(b"content-encoding", b"").decode().lower()
        if encoding in ("gzip", "deflate"):
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS)
        length = headers.get(HEADER_LENGTH.encode())
        header_size = int(length) if length else len(body)
        try:
            request = json.loads(body[:header_size])
        except ValueError as exc:
            raise InvalidInput(f"the request is not JSON: {exc}") from None
        tensors = decode_inputs(request, memoryview(body)[header_size:])
        parameters = request.get("parameters") or {}
        outputs = await model.infer(tensors, int(parameters.get("timeout", 0) or 0))
        return encode_outputs(model, request, outputs)


def decode_inputs(request: dict, binary: memoryview) -> dict[str, np.ndarray]:
    """The request's tensors: JSON `data`, or bytes after the JSON header (binary_data_size)."""
    tensors = {}
    offset = 0
    try:
        for item in request["inputs"]:
            name, shape, datatype = item["name"], item["shape"], item["datatype"]
            size = (item.get("parameters") or {}).get("binary_data_size")
            if size is not None:
                tensors[name] = from_bytes(binary[offset : offset + size], datatype, shape, name)
                offset += size
            else:
                tensors[name] = from_list(item["data"], datatype, shape, name)
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"malformed inference request: missing or wrong field {exc}") from None
    return tensors


def encode_outputs(model: Any, request: dict, outputs: list[np.ndarray]) -> tuple[int, bytes, list]:
    """The response: JSON `data`, or raw bytes after the JSON header for the outputs asked for in
    binary (binary_data per output, or binary_data_output for all)."""
    all_binary = bool((request.get("parameters") or {}).get("binary_data_output", False))
    wanted = {o["name"]: (o.get("parameters") or {}) for o in request.get("outputs") or []}
    names = [meta.name for meta in model.outputs]
    unknown = set(wanted) - set(names)
    if unknown:
        raise InvalidInput(f"model {model.name} has no output {sorted(unknown)[0]!r} (it has {', '.join(names)})")
    items, chunks = [], []
    for name, array in zip(names, outputs, strict=True):
        if wanted and name not in wanted:
            continue
        item: dict[str, Any] = {"name": name, "datatype": datatype_name(array.dtype), "shape": list(array.shape)}
        if wanted.get(name, {}).get("binary_data", all_binary):
            raw = np.ascontiguousarray(array).tobytes()
            item["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            item["data"] = array.ravel().tolist()
        items.append(item)
    response: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": items}
    if "id" in request:
        response["id"] = request["id"]
    header = _dumps(response)
    if not chunks:
        return 200, header, _JSON
    return 200, b"".join([header, *chunks]), [(b"content-type", b"application/octet-stream"),
                                              (HEADER_LENGTH.encode(), str(len(header)).encode())]


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _int64_as_numbers(value: Any, key: str = "") -> Any:
    """Protobuf's JSON writes 64-bit integers (dims, microseconds) as strings; Triton's config JSON
    has numbers."""
    if isinstance(value, dict):
        return {k: _int64_as_numbers(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_int64_as_numbers(v, key) for v in value]
    if isinstance(value, str) and (key == "dims" or key.endswith("_microseconds")):
        return int(value)
    return value


def _not_found(path: str) -> tuple[int, bytes, list]:
    return 404, _dumps({"error": f"no such endpoint: {path}"}), _JSON


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
