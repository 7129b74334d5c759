"""Prometheus metrics of one server: requests and latency per RPC and status (a server
interceptor), index sizes and replication lag (read at scrape time), and the library's own
process-wide counters (images embedded, forward-pass batch sizes, decode failures).

Each server has its own registry, so several servers in one process (the tests) do not
collide; the library's default-registry metrics are forwarded into each."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server

from indexer.catalog.context import Context
from indexer.catalog.observe import IndexSizes
from indexer.catalog.replication import Follower

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every call and times it, by full method name and final status code."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "strata_rpc_requests",
            "gRPC calls handled, by method and status code",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "strata_rpc_latency_seconds",
            "gRPC call duration (to the last response message), by method and status code",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # method -> (the inner handler, its wrapped form): built once per method, not per call.
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = str(handler_call_details.method)
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        wrapped_handler = self._wrap_handler(method, handler)
        self._wrapped[method] = (handler, wrapped_handler)
        return wrapped_handler

    def _wrap_handler(self, method: str, handler: Any) -> Any:
        shape = (handler.request_streaming, handler.response_streaming)
        kind = {
            (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
            (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
            (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
            (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
        }[shape]
        behavior = getattr(handler, kind[0])
        wrapped = self._wrap(method, behavior)
        if wrapped is None:
            return handler
        return kind[1](
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _wrap(self, method: str, behavior: Any) -> Any:
        if inspect.isasyncgenfunction(behavior):

            async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator:
                began, error = time.perf_counter(), None
                try:
                    async for response in behavior(request, context):
                        yield response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    self._observe(method, context, error, began)

            return streaming
        if inspect.iscoroutinefunction(behavior):

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                began, error = time.perf_counter(), None
                try:
                    return await behavior(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    self._observe(method, context, error, began)

            return unary
        return None  # a synchronous handler: not ours to wrap

    def _observe(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        error: BaseException | None,
        began: float,
    ) -> None:
        code = status_name(context, error)
        self.requests.labels(method, code).inc()
        self.latency.labels(method, code).observe(time.perf_counter() - began)


def status_name(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    """The call's final status as its name (OK, NOT_FOUND, ...)."""
    code: Any = None
    try:
        code = context.code()
    except Exception:  # older grpc or a context without it
        code = None
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return status.name
    if error is None:
        return "OK"
    if isinstance(error, grpc.aio.AbortError):
        return "UNKNOWN"
    if isinstance(error, (GeneratorExit, asyncio.CancelledError)):
        return "CANCELLED"
    return "UNKNOWN"


class _LibraryMetrics:
    """Forwards the default registry (library counters, process and GC metrics)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class _FrozenObjects:
    """Objects the collector no longer walks (see service/server.py: frozen after start-up)."""

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "strata_gc_frozen_objects",
            "Objects moved out of the cyclic garbage collector's reach after start-up",
            value=gc.get_freeze_count(),
        )


class _ReplicaMetrics:
    """Index sizes and replication state, read from the running server when scraped."""

    def __init__(self, ctx: Context, follower: Follower | None):
        self.ctx = ctx
        self.follower = follower
        self.index_sizes = IndexSizes(ctx)

    def collect(self) -> Iterator[Metric]:
        sizes = GaugeMetricFamily(
            "strata_index_vectors",
            "Vectors in each opened FAISS index",
            labels=["collection", "depth", "kind"],
        )
        try:
            for row in self.index_sizes():
                sizes.add_metric([row.collection, row.depth, row.kind], row.vectors)
        except Exception:  # the database away: report the rest
            log.warning("metrics: cannot read collection names", exc_info=True)
        yield sizes
        follower = self.follower
        if follower is None:
            return
        yield GaugeMetricFamily(
            "strata_replication_lag_seconds",
            "Age of the oldest change by another writer this replica has not applied",
            value=follower.lag_s(),
        )
        yield GaugeMetricFamily(
            "strata_replication_applied_seq",
            "Last change-log sequence number this replica applied",
            value=follower.applied_seq,
        )
        applied = CounterMetricFamily(
            "strata_replication_vectors",
            "Vectors this replica added or removed while applying others' changes",
            labels=["op"],
        )
        applied.add_metric(["add"], follower.totals.added)
        applied.add_metric(["remove"], follower.totals.removed)
        yield applied


def new_registry(ctx: Context, follower: Follower | None) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_LibraryMetrics())
    registry.register(_FrozenObjects())
    registry.register(_ReplicaMetrics(ctx, follower))
    return registry


def serve_metrics(address: str, registry: CollectorRegistry) -> Any:
    """Serve /metrics over HTTP on HOST:PORT in a background thread; returns the server
    (its `.shutdown()` stops it)."""
    host, _, port = address.rpartition(":")
    try:
        server, _thread = start_http_server(int(port), host.strip("[]"), registry=registry)
    except OSError as exc:
        raise OSError(
            f"cannot serve metrics on {address}: {exc.strerror or exc}; choose another "
            "address with --metrics-listen or STRATA_METRICS_LISTEN"
        ) from exc
    log.info("metrics on http://%s/metrics", address)
    return server
