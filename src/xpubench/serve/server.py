"""The server: its models, both transports on one event loop, and a graceful stop on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

import uvicorn

from xpubench.serve.errors import UnknownModel
from xpubench.serve.model import HostedModel
from xpubench.version import __version__

EXTENSIONS = ["binary_tensor_data", "statistics", "model_configuration"]
GRACE_S = 60.0  # the longest a stop waits for requests in flight


class ModelServer:
    """What both transports serve: the models by name, and whether the server takes requests."""

    def __init__(self, models: list[HostedModel]) -> None:
        self.models = {m.name: m for m in models}
        self.live = True
        self.stopping = False

    @property
    def ready(self) -> bool:
        return not self.stopping and all(m.ready for m in self.models.values())

    def model(self, name: str) -> HostedModel:
        try:
            return self.models[name]
        except KeyError:
            raise UnknownModel(f"unknown model {name!r}: this server has {', '.join(self.models)}") from None

    def metadata(self) -> dict:
        return {"name": "xpubench", "version": __version__, "extensions": EXTENSIONS}


def serve(server: ModelServer, host: str, http_port: int, grpc_port: int, say: Callable[[str], None] = print) -> int:
    """Serve until SIGINT or SIGTERM, then stop taking requests, answer those in flight, and return 0."""
    return asyncio.run(_serve(server, host, http_port, grpc_port, say))


async def _serve(server: ModelServer, host: str, http_port: int, grpc_port: int, say: Callable[[str], None]) -> int:
    from xpubench.serve.grpc import make_server
    from xpubench.serve.http import InferenceApp

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config = uvicorn.Config(InferenceApp(server), host=host, port=http_port, http="httptools", lifespan="off",
                            log_level="warning", access_log=False, timeout_graceful_shutdown=int(GRACE_S))
    http = _QuietServer(config)
    grpc_server = make_server(server, f"{host}:{grpc_port}")
    await grpc_server.start()
    http_task = asyncio.create_task(http.serve())
    while not http.started:
        if http_task.done():  # it could not bind: its error, after the gRPC server is stopped
            await grpc_server.stop(None)
            http_task.result()
            raise OSError(f"cannot listen for HTTP on {host}:{http_port}")
        await asyncio.sleep(0.01)
    for model in server.models.values():
        model.ready = True
    say(f"serving {', '.join(server.models)} on http://{host}:{http_port} and grpc {host}:{grpc_port} "
        "(Ctrl-C stops)")
    await stop.wait()
    say("stopping: answering the requests in flight")
    server.stopping = True
    for model in server.models.values():
        model.scheduler.flush()  # what is queued goes now, not after its queue delay
    http.should_exit = True
    await asyncio.gather(http_task, grpc_server.stop(GRACE_S))
    for model in server.models.values():
        await asyncio.to_thread(model.close)
    return 0


class _QuietServer(uvicorn.Server):
    """uvicorn's Server without its own signal handling: it re-raises a caught SIGINT after its
    shutdown, which would turn a graceful stop into an exit by KeyboardInterrupt."""

    def capture_signals(self):  # type: ignore[override]
        return contextlib.nullcontext()
