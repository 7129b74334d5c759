"""The serving side of replication: the change-log follower's life cycle, health flipped
to NOT_SERVING while this replica lags, and the metrics endpoint (docs/REPLICAS.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from grpc_health.v1 import health, health_pb2
from prometheus_client import CollectorRegistry

from indexer.catalog.context import Context
from indexer.catalog.replication import Follower
from indexer.store.database import database_reachable
from service.metrics import MetricsInterceptor, new_registry, serve_metrics
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

#: How often health is brought in line with the lag.
HEALTH_CHECK_S = 0.5
#: A database that has not answered `SELECT 1` within this is unreachable for health.
PROBE_TIMEOUT_S = 2.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class Replica:
    settings: ServiceSettings
    follower: Follower
    registry: CollectorRegistry
    interceptor: MetricsInterceptor
    serving: bool = True
    _watcher: asyncio.Task[None] | None = None
    _metrics_server: Any = None
    _names: Sequence[str] = field(default_factory=tuple)
    #: The database probe's own thread: on the shared pool it waited behind request threads
    #: blocked in SQL, and health said SERVING through a stall (docs/REPLICAS.md).
    _probe: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="health-probe")
    )

    @classmethod
    def prepare(cls, ctx: Context, settings: ServiceSettings) -> Replica:
        """Before the start-up reconcile: remember the change log's head (see Follower)."""
        follower = Follower(ctx)
        follower.start_position()
        registry = new_registry(ctx, follower)
        return cls(settings, follower, registry, MetricsInterceptor(registry))

    def open_metrics(self) -> None:
        """Serve /metrics if asked to: bound before the gRPC port opens, so a busy or bad
        address stops the start at once rather than after the warm-up."""
        if self.settings.metrics_listen:
            self._metrics_server = serve_metrics(self.settings.metrics_listen, self.registry)

    async def start(self, health_servicer: health.aio.HealthServicer, names: Sequence[str]) -> None:
        """Once serving: follow the log, watch the lag."""
        self.follower.start()
        self._names = tuple(names)
        self._watcher = asyncio.create_task(self._watch(health_servicer))

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._metrics_server is not None:
            await asyncio.to_thread(self._metrics_server.shutdown)
            self._metrics_server.server_close()
        await asyncio.to_thread(self.follower.stop)
        self._probe.shutdown(wait=False, cancel_futures=True)

    async def _watch(self, health_servicer: health.aio.HealthServicer) -> None:
        limit = self.settings.replica_max_lag_s
        while True:
            await asyncio.sleep(HEALTH_CHECK_S)
            lag = self.follower.lag_s()
            # The database away (restarting, connections refused, stalled) is NOT_SERVING
            # too. A probe that hangs keeps the thread; later ones queue behind it and time
            # out as well, until the database answers.
            probe = asyncio.get_running_loop().run_in_executor(
                self._probe, database_reachable, self.follower.ctx.engine
            )
            try:
                reachable = await asyncio.wait_for(probe, PROBE_TIMEOUT_S)
            except TimeoutError:
                reachable = False
            serving = lag <= limit and reachable
            if serving == self.serving:
                continue
            self.serving = serving
            if not reachable:
                log.warning("the database is unreachable: NOT_SERVING until it is back")
            elif serving:
                log.info("replica caught up (lag %.1f s): SERVING", lag)
            else:
                log.warning(
                    "replica %.1f s behind the change log (limit %.1f s): NOT_SERVING",
                    lag,
                    limit,
                )
            for name in self._names:
                await health_servicer.set(name, SERVING if serving else NOT_SERVING)
