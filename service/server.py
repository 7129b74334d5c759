"""Building and running the gRPC server: health checking and reflection on, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from indexer.context import Context
from indexer.settings import Settings
from service.generated.strata.v1 import strata_pb2, strata_pb2_grpc
from service.servicer import StrataServicer

log = logging.getLogger(__name__)

SERVICE_NAME = strata_pb2.DESCRIPTOR.services_by_name["Strata"].full_name
SHUTDOWN_GRACE_S = 10.0


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    ctx: Context
    health: health.HealthServicer
    saver: asyncio.Task[None] | None = None

    async def stop(self, grace: float | None = SHUTDOWN_GRACE_S) -> None:
        """Flip health to NOT_SERVING, let in-flight calls finish, save indexes."""
        self.health.enter_graceful_shutdown()
        if self.saver is not None:
            self.saver.cancel()
        await self.server.stop(grace)
        await asyncio.to_thread(self.ctx.close)


async def create_server(settings: Settings, address: str | None = None) -> RunningServer:
    """Build and start a server on `address` (port 0 picks a free one); returns it running."""
    ctx = await asyncio.to_thread(Context.open, settings)
    limit = settings.max_message_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_requests,
    )
    strata_pb2_grpc.add_StrataServicer_to_server(StrataServicer(ctx), server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(address or settings.listen)
    if port == 0:
        raise OSError(f"cannot listen on {address or settings.listen}")
    await server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    running = RunningServer(server, port, ctx, health_servicer)
    running.saver = asyncio.create_task(_save_periodically(ctx, settings.index_save_interval_s))
    return running


async def _save_periodically(ctx: Context, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            saved = await asyncio.to_thread(ctx.indexes.save_dirty)
            if saved:
                log.info("saved %d index file(s)", saved)
        except Exception:
            log.exception("saving index files failed; SQL still holds every vector")


async def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    running = await create_server(settings)
    log.info("strata serving on %s (data: %s)", settings.listen, settings.data_dir)
    print(f"strata: serving on {settings.listen}, data in {settings.data_dir}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await running.stop()
