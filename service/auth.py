"""Bearer tokens in call metadata: read-only and read-write tokens, checked per method.

A call sends `authorization: Bearer TOKEN`. Health checks need no token (load balancers and
orchestrators probe them); every other call needs a read or a write token, and a method that
changes anything needs a write token. Methods are writes unless listed in READ_METHODS, so a
new RPC is protected until someone decides it only reads.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc

from indexer.core.errors import PermissionDenied, StrataError, Unauthenticated
from service.errors import status_for

log = logging.getLogger(__name__)

STRATA_SERVICE = "strata.v1.Strata"
#: Strata methods that only read; every other Strata method needs a write token.
READ_METHODS = frozenset(
    {
        "ListBackbones",
        "ListLayers",
        "ListCollections",
        "GetCollection",
        "GetItem",
        "Search",
        "Embed",
        "Classify",
    }
)
#: Services open to anyone: health checks.
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
#: Other services that any valid token may use (they only describe the API).
READ_SERVICES = frozenset(
    {"grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
)

TOKEN_HINT = (
    "send metadata 'authorization: Bearer TOKEN' (strata --token or STRATA_TOKEN; "
    "StrataClient(token=...))"
)


def split_method(full_method: str) -> tuple[str, str]:
    """'/strata.v1.Strata/Search' -> ('strata.v1.Strata', 'Search')."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


#: strata.v1.Labels methods that only read (Probe and PredictLabels store their results).
LABELS_SERVICE = "strata.v1.Labels"
LABELS_READ_METHODS = frozenset(
    {"ExportLabels", "PredictProbe", "SuggestLabels", "LabelIssues", "Duplicates"}
)


#: strata.v1.Insight methods that only read (explanations and channel statistics).
INSIGHT_SERVICE = "strata.v1.Insight"
INSIGHT_READ_METHODS = frozenset({"Explain", "Channels"})


#: strata.v1.Browse methods that only read (BackfillThumbnails stores thumbnails; the
#: projection cache GetProjection fills is derived data, like a FAISS file).
BROWSE_SERVICE = "strata.v1.Browse"
BROWSE_READ_METHODS = frozenset({"GetThumbnails", "ListItems", "GetProjection"})


def needs_write(full_method: str) -> bool:
    service, method = split_method(full_method)
    if service == STRATA_SERVICE:
        return method not in READ_METHODS
    if service == LABELS_SERVICE:
        return method not in LABELS_READ_METHODS
    if service == INSIGHT_SERVICE:
        return method not in INSIGHT_READ_METHODS
    if service == BROWSE_SERVICE:
        return method not in BROWSE_READ_METHODS
    return service not in READ_SERVICES


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode() if isinstance(value, bytes) else str(value)
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, read_tokens: Sequence[str], write_tokens: Sequence[str]):
        self._read = [t.encode() for t in read_tokens]
        self._write = [t.encode() for t in write_tokens]

    def _grants(self, token: str | None) -> str | None:
        """'write', 'read' or None; compares in constant time against every token."""
        if token is None:
            return None
        given = token.encode()
        writes = any([hmac.compare_digest(given, t) for t in self._write])
        reads = any([hmac.compare_digest(given, t) for t in self._read])
        return "write" if writes else "read" if reads else None

    def refusal(self, full_method: str, metadata: Any) -> StrataError | None:
        """The error refusing this call, or None when it may go on."""
        service, method = split_method(full_method)
        if service in OPEN_SERVICES:
            return None
        token = bearer_token(metadata)
        grant = self._grants(token)
        if grant is None:
            reason = "no bearer token" if token is None else "the bearer token is not valid"
            return Unauthenticated(f"{method or full_method}: {reason}", hint=TOKEN_HINT)
        if grant == "read" and needs_write(full_method):
            return PermissionDenied(
                f"{method}: changes data and the token given is read-only",
                hint="use a read-write token (STRATA_WRITE_TOKENS on the server)",
            )
        return None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        refused = self.refusal(
            handler_call_details.method,
            handler_call_details.invocation_metadata,
        )
        handler = await continuation(handler_call_details)
        if refused is None or handler is None:
            return handler
        log.info("refused %s: %s", handler_call_details.method, refused.message)
        return _aborting(handler, status_for(refused), str(refused))


def _aborting(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, details: str) -> Any:
    """A handler that only aborts with (code, details), without reading the request.

    For a unary request gRPC reads and deserialises the whole message before the handler
    runs, so a refused 60 MB call would still cost 60 MB. A stream-request handler runs as
    soon as the headers arrive and reads nothing until asked: the refusal is always given
    as one, whatever the method's shape (the wire format is the same for both)."""

    async def abort(_requests: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(code, details)

    return grpc.stream_stream_rpc_method_handler(
        abort,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
