"""Admission of calls: a bounded number of expensive calls in flight, a fair share per
client connection, their own room for health checks and cheap reads, and an end to client
streams that go quiet.

gRPC's own `maximum_concurrent_rpcs` refuses every call once the limit is reached, health
checks included, so 64 AddImages streams that never send a message locked everyone out. Here
the server-wide backstop is set far above the limit, and this interceptor decides instead:

- health, reflection and cheap reads (listing, one collection, one item) never wait on the
  expensive calls' limit; they have their own, larger one;
- every other call takes a slot of `max_concurrent_requests`; of those, request streams
  (AddImages: the calls a client can hold open while sending nothing) at most
  `max_requests_per_client` per client connection (gRPC peer). Unary calls are not capped
  per client: gRPC shares one connection among a process's channels, so 16 threads of one
  program searching at once are one peer, and they are a normal load, not an abuse;
- a request stream that sends nothing for `idle_stream_timeout_s` is ended with
  DEADLINE_EXCEEDED, which frees its slot.

A refused call answers RESOURCE_EXHAUSTED with a message saying which limit and to retry.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from service.auth import split_method

log = logging.getLogger(__name__)

#: Calls that are cheap and bounded: they get their own room (CHEAP_LIMIT at once).
CHEAP_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
CHEAP_METHODS = frozenset(
    {
        "/strata.v1.Strata/ListBackbones",
        "/strata.v1.Strata/ListCollections",
        "/strata.v1.Strata/GetCollection",
        "/strata.v1.Strata/GetItem",
    }
)
CHEAP_LIMIT = 256


def is_cheap(full_method: str) -> bool:
    service, _ = split_method(full_method)
    return service in CHEAP_SERVICES or full_method in CHEAP_METHODS


def grpc_backstop(max_concurrent_requests: int) -> int:
    """gRPC's own limit: high enough that this interceptor always decides first."""
    return 2 * (max_concurrent_requests + CHEAP_LIMIT)


class Admission:
    """Counts of calls in flight, in total and per client; all on the event loop thread."""

    def __init__(self, limit: int, per_client: int):
        self.limit = limit
        self.per_client = per_client or max(1, limit // 4)
        self.total = 0
        self.cheap = 0
        self.by_client: Counter[str] = Counter()

    def refusal(self, full_method: str, peer: str, stream: bool) -> str | None:
        if is_cheap(full_method):
            if self.cheap >= CHEAP_LIMIT:
                return f"{CHEAP_LIMIT} cheap calls are already in flight"
            return None
        if self.total >= self.limit:
            return f"the server is busy: {self.total} calls in flight (limit {self.limit})"
        if stream and self.by_client[peer] >= self.per_client:
            return (
                f"this client already has {self.by_client[peer]} request streams open "
                f"(limit {self.per_client} per client)"
            )
        return None

    def enter(self, full_method: str, peer: str, stream: bool) -> None:
        if is_cheap(full_method):
            self.cheap += 1
            return
        self.total += 1
        if stream:
            self.by_client[peer] += 1

    def leave(self, full_method: str, peer: str, stream: bool) -> None:
        if is_cheap(full_method):
            self.cheap -= 1
            return
        self.total -= 1
        if stream:
            self.by_client[peer] -= 1
            if self.by_client[peer] <= 0:
                del self.by_client[peer]


class AdmissionInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, limit: int, per_client: int, idle_timeout_s: float):
        self.admission = Admission(limit, per_client)
        self.idle_timeout_s = idle_timeout_s
        # method -> (the inner handler, its wrapped form): built once per method, not per call
        # (the servicers' handlers are fixed, so the interceptor outside can keep its own).
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped = _wrap(handler, method, self)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _wrap(handler: grpc.RpcMethodHandler, method: str, guard: AdmissionInterceptor) -> Any:
    """The same handler, its behaviour run inside an admission slot, its request stream
    (when it has one) ended after `idle_timeout_s` without a message."""
    admission = guard.admission
    streaming_in = handler.request_streaming

    def request_of(request: Any, context: grpc.aio.ServicerContext) -> Any:
        return _idle_limited(request, context, guard.idle_timeout_s) if streaming_in else request

    async def admit(context: grpc.aio.ServicerContext) -> str:
        peer = context.peer() or "unknown"
        refused = admission.refusal(method, peer, streaming_in)
        if refused is not None:
            log.warning("refused %s from %s: %s", method, peer, refused)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{method.rpartition('/')[2]}: {refused}; retry in a moment",
            )
        admission.enter(method, peer, streaming_in)
        return peer

    if handler.response_streaming:
        inner_stream = handler.stream_stream if streaming_in else handler.unary_stream

        async def stream_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            peer = await admit(context)
            try:
                async for response in inner_stream(request_of(request, context), context):
                    yield response
            finally:
                admission.leave(method, peer, streaming_in)

        async def writing_behavior(request: Any, context: grpc.aio.ServicerContext) -> None:
            # A handler in the other aio style (health's Watch): it answers through
            # context.write and returns, so it is awaited, not iterated.
            peer = await admit(context)
            try:
                await inner_stream(request_of(request, context), context)
            finally:
                admission.leave(method, peer, streaming_in)

        behavior: Any = (
            stream_behavior if inspect.isasyncgenfunction(inner_stream) else writing_behavior
        )
    else:
        inner_unary = handler.stream_unary if streaming_in else handler.unary_unary

        async def unary_behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
            peer = await admit(context)
            try:
                return await inner_unary(request_of(request, context), context)
            finally:
                admission.leave(method, peer, streaming_in)

        behavior = unary_behavior
    factories = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    return factories[(streaming_in, handler.response_streaming)](
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


async def _idle_limited(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext, timeout_s: float
) -> AsyncIterator[Any]:
    iterator = aiter(requests)
    while True:
        try:
            request = await asyncio.wait_for(anext(iterator), timeout_s)
        except StopAsyncIteration:
            return
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"the request stream sent no message for {timeout_s:g} s and was ended; "
                "what was acknowledged is stored. Hint: send messages steadily, or close "
                "the stream when done",
            )
        yield request
