"""Why a request was refused, with the status each transport answers it with."""

from __future__ import annotations


class ServeError(Exception):
    """A request the server answers with an error; subclasses carry the HTTP status and gRPC code."""

    http_status = 500
    grpc_code = "INTERNAL"


class InvalidInput(ServeError):
    http_status = 400
    grpc_code = "INVALID_ARGUMENT"


class UnknownModel(ServeError):
    http_status = 404
    grpc_code = "NOT_FOUND"


class QueueFull(ServeError):
    """max_queue_size reached: rejected at once, as Triton does."""

    http_status = 503
    grpc_code = "RESOURCE_EXHAUSTED"


class QueueTimeout(ServeError):
    """The request waited in the queue past its timeout and was never run."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


class Unavailable(ServeError):
    """The server is shutting down: it finishes what it holds and takes nothing new."""

    http_status = 503
    grpc_code = "UNAVAILABLE"


class InferenceFailed(ServeError):
    """The runtime raised on the batch that held this request."""
