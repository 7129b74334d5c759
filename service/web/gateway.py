"""The app's only way to Strata: StrataClient calls run in worker threads of their own (the
client is synchronous), over one channel with each call's bearer token, under a deadline;
gRPC errors become HTTP statuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.client import StrataClient, StrataClientError, channel_credentials, open_channel
from service.web.config import WebSettings

T = TypeVar("T")

#: gRPC status name -> HTTP status the app answers with.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 413,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

#: Calls in flight to the gRPC server at once. They wait in threads of their own, so a slow
#: or frozen server never takes the threads that static files and /healthz need.
MAX_CALLS_IN_FLIGHT = 32
#: Seconds a page or a quick API call waits (listings, items, search, labels, uploads).
QUICK_TIMEOUT = 30.0
#: A channel that lost its server retries within this, so the app recovers soon after.
RECONNECT_BACKOFF_MS = 5000


def http_status(error: StrataClientError) -> int:
    return HTTP_STATUS.get(error.code, 502)


class Gateway:
    """One gRPC channel for every browser: each call carries its own bearer token, so no
    user's call waits on, or is closed by, another user's connection."""

    def __init__(self, settings: WebSettings):
        self.settings = settings
        self._channel = self._open()
        self._health_channel = self._open()
        self._limiter = anyio.CapacityLimiter(MAX_CALLS_IN_FLIGHT)
        self._health_limiter = anyio.CapacityLimiter(2)

    def _open(self) -> grpc.Channel:
        s = self.settings
        credentials = channel_credentials(s.root_certificates, s.private_key, s.certificate_chain)
        return open_channel(
            s.server,
            credentials,
            [
                ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
                ("grpc.initial_reconnect_backoff_ms", 500),
            ],
        )

    def client(self, token: str | None, slow: bool = False) -> StrataClient:
        """A client over the shared channel: `slow` for probes, predictions and other calls
        that take minutes on large collections, else the quick timeout."""
        s = self.settings
        return StrataClient(
            s.server,
            timeout=s.timeout if slow else min(s.timeout, QUICK_TIMEOUT),
            token=token or s.token or "",  # none: not the web process's own STRATA_TOKEN
            root_certificates=s.root_certificates,
            private_key=s.private_key,
            certificate_chain=s.certificate_chain,
            channel=self._channel,
        )

    async def call(
        self, token: str | None, work: Callable[[StrataClient], T], slow: bool = False
    ) -> T:
        client = self.client(token, slow)
        return await anyio.to_thread.run_sync(work, client, limiter=self._limiter)

    def _healthy(self) -> bool:
        stub = health_pb2_grpc.HealthStub(self._health_channel)
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
        except grpc.RpcError:
            # A channel that failed to connect backs off for up to minutes; start a new
            # one so /healthz turns 200 as soon as the server is up.
            self._health_channel.close()
            self._health_channel = self._open()
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def healthy(self) -> bool:
        return await anyio.to_thread.run_sync(self._healthy, limiter=self._health_limiter)

    def close(self) -> None:
        self._channel.close()
        self._health_channel.close()
