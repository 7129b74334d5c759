"""The app's only way to Strata: StrataClient calls run in a worker thread (the client is
synchronous), one client per bearer token, and gRPC errors become HTTP statuses."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from threading import Lock
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.concurrency import run_in_threadpool

from service.client import StrataClient, StrataClientError, channel_credentials
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

_MAX_CLIENTS = 16  # distinct tokens kept open at once (least recently used closed first)


def http_status(error: StrataClientError) -> int:
    return HTTP_STATUS.get(error.code, 502)


class Gateway:
    def __init__(self, settings: WebSettings):
        self.settings = settings
        self._clients: OrderedDict[str | None, StrataClient] = OrderedDict()
        self._lock = Lock()
        self._health_channel = self._channel()

    def _channel(self) -> grpc.Channel:
        s = self.settings
        credentials = channel_credentials(s.root_certificates, s.private_key, s.certificate_chain)
        if credentials is not None:
            return grpc.secure_channel(s.server, credentials)
        return grpc.insecure_channel(s.server)

    def client(self, token: str | None) -> StrataClient:
        token = token or self.settings.token
        with self._lock:
            found = self._clients.get(token)
            if found is not None:
                self._clients.move_to_end(token)
                return found
            s = self.settings
            made = StrataClient(
                s.server,
                timeout=s.timeout,
                token=token or "",  # none: not the web process's own STRATA_TOKEN
                root_certificates=s.root_certificates,
                private_key=s.private_key,
                certificate_chain=s.certificate_chain,
            )
            self._clients[token] = made
            if len(self._clients) > _MAX_CLIENTS:
                _, oldest = self._clients.popitem(last=False)
                oldest.close()
            return made

    async def call(self, token: str | None, work: Callable[[StrataClient], T]) -> T:
        client = self.client(token)
        return await run_in_threadpool(work, client)

    def _healthy(self) -> bool:
        stub = health_pb2_grpc.HealthStub(self._health_channel)
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=2.0)
        except grpc.RpcError:
            # A channel that failed to connect backs off for up to minutes; start a new
            # one so /healthz turns 200 as soon as the server is up.
            self._health_channel.close()
            self._health_channel = self._channel()
            return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def healthy(self) -> bool:
        return await run_in_threadpool(self._healthy)

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
        self._health_channel.close()
