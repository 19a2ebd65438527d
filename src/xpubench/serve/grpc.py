"""The Open Inference Protocol over gRPC: GRPCInferenceService on a grpc.aio server, from the stubs
tritonclient ships (tritonclient.grpc.service_pb2, service_pb2_grpc)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
from google.protobuf import json_format
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from xpubench.serve.errors import InvalidInput, ServeError, UnknownModel
from xpubench.serve.tensors import datatype_name, from_list, numpy_dtype

if TYPE_CHECKING:
    from xpubench.serve.model import HostedModel
    from xpubench.serve.server import ModelServer

# Tensors sent in typed `contents` rather than raw bytes: the field each datatype uses.
_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
             "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
             "FP64": "fp64_contents"}
MAX_MESSAGE = 1 << 30


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    """ServerLive/Ready, ModelReady, the metadata, ModelConfig, ModelStatistics and ModelInfer."""

    def __init__(self, server: ModelServer) -> None:
        self.server = server

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=self.server.live)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.server.ready)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        meta = self.server.metadata()
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            model = self._model(request.name, request.version)
        except UnknownModel:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=model.ready)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        model = await self._or_abort(context, request.name, request.version)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=model.name, versions=[model.version], platform=model.platform,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in model.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in model.outputs],
        )

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        model = await self._or_abort(context, request.name, request.version)
        return pb.ModelConfigResponse(config=model.config())

    async def ModelStatistics(self, request: Any, context: Any) -> Any:
        if request.name:
            models = [await self._or_abort(context, request.name, request.version)]
        else:
            models = list(self.server.models.values())
        return json_format.ParseDict({"model_stats": [m.stats.as_dict() for m in models]},
                                     pb.ModelStatisticsResponse())

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        try:
            model = self._model(request.model_name, request.model_version)
            tensors = decode_inputs(request)
            timeout = request.parameters["timeout"].int64_param if "timeout" in request.parameters else 0
            outputs = await model.infer(tensors, int(timeout))
            return encode_outputs(model, request, outputs)
        except ServeError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.grpc_code), str(exc))

    def _model(self, name: str, version: str) -> HostedModel:
        model = self.server.model(name)
        if version and version != model.version:
            raise UnknownModel(f"model {name} has no version {version} (it has {model.version})")
        return model

    async def _or_abort(self, context: Any, name: str, version: str) -> HostedModel:
        try:
            return self._model(name, version)
        except ServeError as exc:
            await context.abort(getattr(grpc.StatusCode, exc.grpc_code), str(exc))
            raise  # abort raises; this line is never reached


def decode_inputs(request: Any) -> dict[str, np.ndarray]:
    """The request's tensors: raw_input_contents (row-major bytes, one per input) or typed contents."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    tensors = {}
    for i, item in enumerate(request.inputs):
        shape = list(item.shape)
        if raw:
            dtype = numpy_dtype(item.datatype)
            data = raw[i]
            count = int(np.prod(shape, dtype=np.int64))
            if len(data) != count * dtype.itemsize:
                raise InvalidInput(f"input {item.name!r}: {len(data)} bytes for shape {shape} of {item.datatype}")
            tensors[item.name] = np.frombuffer(data, dtype=dtype).reshape(shape)
        else:
            field = _CONTENTS.get(item.datatype)
            if field is None:
                raise InvalidInput(f"input {item.name!r}: send {item.datatype} in raw_input_contents")
            tensors[item.name] = from_list(list(getattr(item.contents, field)), item.datatype, shape, item.name)
    return tensors


def encode_outputs(model: HostedModel, request: Any, outputs: list[np.ndarray]) -> Any:
    """ModelInferResponse with every output (or those asked for) in raw_output_contents."""
    names = [meta.name for meta in model.outputs]
    wanted = {o.name for o in request.outputs}
    unknown = wanted - set(names)
    if unknown:
        raise InvalidInput(f"model {model.name} has no output {sorted(unknown)[0]!r} (it has {', '.join(names)})")
    response = pb.ModelInferResponse(model_name=model.name, model_version=model.version, id=request.id)
    for name, array in zip(names, outputs, strict=True):
        if wanted and name not in wanted:
            continue
        response.outputs.add(name=name, datatype=datatype_name(array.dtype), shape=array.shape)
        response.raw_output_contents.append(np.ascontiguousarray(array).tobytes())
    return response


def make_server(server: ModelServer, address: str) -> grpc.aio.Server:
    """A grpc.aio server bound to `address` (host:port), not started."""
    aio = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                   ("grpc.max_send_message_length", MAX_MESSAGE)])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(server), aio)
    if aio.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    return aio
