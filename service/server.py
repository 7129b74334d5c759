"""Building and running the gRPC server: health checking and reflection on, TLS and bearer
tokens when configured, indexes reconciled with SQL before serving, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from indexer.catalog.context import Context
from indexer.catalog.reconcile import reconcile_indexes
from indexer.catalog.warmup import warm_engines, warm_search_paths
from service.auth import TokenAuthInterceptor
from service.browse_servicer import BROWSE_SERVICE_NAME, add_browse_service
from service.generated.strata.v1 import strata_pb2, strata_pb2_grpc
from service.insight_servicer import INSIGHT_SERVICE_NAME, add_insight_service
from service.labels_servicer import LABELS_SERVICE_NAME, add_labels_service
from service.limits import AdmissionInterceptor, grpc_backstop
from service.logs import JsonFormatter
from service.reflection import enable_reflection
from service.replica import Replica
from service.servicer import StrataServicer
from service.settings import ServiceSettings
from service.tls import server_credentials

log = logging.getLogger(__name__)

SERVICE_NAME = strata_pb2.DESCRIPTOR.services_by_name["Strata"].full_name
SHUTDOWN_GRACE_S = 10.0
#: Health entries: the server as a whole ("") and each strata.v1 service.
HEALTH_NAMES = (
    "",
    SERVICE_NAME,
    LABELS_SERVICE_NAME,
    INSIGHT_SERVICE_NAME,
    BROWSE_SERVICE_NAME,
)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    ctx: Context
    health: health.aio.HealthServicer
    saver: asyncio.Task[None] | None = None
    #: The change-log follower, lag health and metrics (service/replica.py).
    replica: Replica | None = None

    async def stop(self, grace: float | None = SHUTDOWN_GRACE_S) -> None:
        """Flip health to NOT_SERVING, let in-flight calls finish, save indexes."""
        await self.health.enter_graceful_shutdown()
        if self.saver is not None:
            self.saver.cancel()
        await self.server.stop(grace)
        if self.replica is not None:
            await self.replica.stop()
        await asyncio.to_thread(self.ctx.close)


async def create_server(
    settings: ServiceSettings, address: str | None = None, *, freeze_objects: bool = False
) -> RunningServer:
    """Build and start a server on `address` (port 0 picks a free one); returns it running.

    Every collection's indexes are opened, checked and reconciled with SQL before the port
    opens, so the first request never meets a stale or corrupt index. `freeze_objects`
    (the process's owner asks for it: `serve`) freezes what start-up built before health
    says SERVING, so no request waits for that collection."""
    ctx = await asyncio.to_thread(Context.open, settings)
    try:
        # The change log's head first: what the reconcile misses lies past it.
        replica = await asyncio.to_thread(Replica.prepare, ctx, settings)
        await asyncio.to_thread(reconcile_indexes, ctx)
        credentials = server_credentials(settings)
    except BaseException:
        await asyncio.to_thread(ctx.close)
        raise
    limit = settings.max_message_bytes
    interceptors: list[grpc.aio.ServerInterceptor] = [replica.interceptor]  # outermost
    if settings.read_tokens or settings.write_tokens:
        interceptors.append(TokenAuthInterceptor(settings.read_tokens, settings.write_tokens))
    # After auth, so refused calls take no slot (service/limits.py: own room for health).
    interceptors.append(
        AdmissionInterceptor(
            settings.max_concurrent_requests,
            settings.max_requests_per_client,
            settings.idle_stream_timeout_s,
        )
    )
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # gRPC shares a port between servers by default (SO_REUSEPORT): a second
            # `strata serve` on a busy address would start and take half the connections.
            ("grpc.so_reuseport", 0),
        ],
        interceptors=interceptors,
        maximum_concurrent_rpcs=grpc_backstop(settings.max_concurrent_requests),
    )
    strata_pb2_grpc.add_StrataServicer_to_server(StrataServicer(ctx, settings), server)
    add_labels_service(ctx, server)
    add_insight_service(ctx, server)
    add_browse_service(ctx, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(
        (
            SERVICE_NAME,
            LABELS_SERVICE_NAME,
            INSIGHT_SERVICE_NAME,
            BROWSE_SERVICE_NAME,
            health.SERVICE_NAME,
        ),
        server,
    )
    where = address or settings.listen
    try:
        if credentials is not None:
            port = server.add_secure_port(where, credentials)
        else:
            port = server.add_insecure_port(where)
    except RuntimeError:  # grpcio's "Failed to bind", which does not say why
        port = 0
    try:
        if port == 0:
            raise OSError(
                f"cannot listen on {where}: {bind_failure(where)}; "
                "choose another address with --listen or STRATA_LISTEN"
            )
        replica.open_metrics()
    except OSError:
        await asyncio.to_thread(ctx.close)
        raise
    _warn_if_exposed(settings, where)
    for name in HEALTH_NAMES:  # open, but not ready until the engines are warm
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.start()
    if settings.warm_up:
        await asyncio.to_thread(warm_engines, ctx)
        await asyncio.to_thread(warm_search_paths, ctx)
    if freeze_objects:
        freeze_start_up_objects()
    for name in HEALTH_NAMES:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    running = RunningServer(server, port, ctx, health_servicer, replica=replica)
    await replica.start(health_servicer, HEALTH_NAMES)
    running.saver = asyncio.create_task(_save_periodically(ctx, settings.index_save_interval_s))
    return running


def bind_failure(address: str) -> str:
    """Why `address` cannot be bound, in the system's words (in use, not this machine's,
    a privileged port); gRPC reports only that it failed."""
    host, _, port = address.rpartition(":")
    try:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((host.strip("[]"), int(port)))
    except OSError as exc:
        return exc.strerror or str(exc)
    except (ValueError, OverflowError) as exc:
        return str(exc)
    return "gRPC could not bind it"


def _warn_if_exposed(settings: ServiceSettings, address: str) -> None:
    host = address.rpartition(":")[0].strip("[]")
    if host in ("127.0.0.1", "localhost", "::1"):
        return
    if settings.tls_cert is None:
        log.warning("listening on %s without TLS: traffic, tokens included, is readable", address)
    if not (settings.read_tokens or settings.write_tokens):
        log.warning("listening on %s without tokens: anyone who reaches it can write", address)


async def _save_periodically(ctx: Context, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            saved = await asyncio.to_thread(ctx.indexes.save_dirty, True)
            if saved:
                log.info("saved %d index file(s)", saved)
        except Exception:
            log.exception("saving index files failed; SQL still holds every vector")


def freeze_start_up_objects() -> None:
    """Move what start-up built (the model's modules, its engines, category names: some
    600k objects for Lite0) out of the cyclic collector's reach. Left in, every full
    collection walks them all, 350 ms on the development machine with every request in
    flight stalled: at 32 search clients one such pause in 15 s made p99 2.9x p50. Frozen,
    a full collection walks only what came after. Only for the process's owner (`serve`),
    since it is process-wide: frozen objects that later become cyclic garbage are never
    freed, which a test process running many servers should not pay."""
    gc.collect()
    gc.freeze()


def ready_line(settings: ServiceSettings) -> str:
    """The one line `serve` prints on stdout once it listens, which scripts wait for. Under
    `--log-format json` it is a JSON record like every log line, since collectors read
    stdout and stderr as one stream."""
    text = f"strata: serving on {settings.listen}, data in {settings.data_dir}"
    if settings.log_format != "json":
        return text
    fields = {"listen": settings.listen, "data_dir": str(settings.data_dir)}
    record = logging.makeLogRecord(
        {"name": log.name, "levelno": logging.INFO, "levelname": "INFO", "msg": text, **fields}
    )
    return JsonFormatter().format(record)


async def serve(settings: ServiceSettings) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    running = await create_server(settings, freeze_objects=True)
    print(ready_line(settings), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await running.stop()
