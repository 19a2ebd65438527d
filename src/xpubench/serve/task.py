"""A launcher's long-lived task: one model served on given ports until the launcher asks it to stop (SIGINT)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from xpubench.serve.model import ServeSpec

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServeTask:
    """What `xpubench serve` does, as a value: `xpubench serve` runs it in its own process, a study through a
    launcher (`Launcher.start`), whose worker then dies with the study."""

    spec: ServeSpec
    http_port: int
    grpc_port: int
    host: str = DEFAULT_HOST

    def execute(self, say: Callable[[str], None]) -> int:
        from xpubench.serve.model import load
        from xpubench.serve.server import ModelServer, serve

        model = load(self.spec, say=say)
        try:
            return serve(ModelServer([model]), self.host, self.http_port, self.grpc_port, say)
        finally:
            model.close(timeout_s=0)
