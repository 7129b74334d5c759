"""Shared fixtures: a real gRPC server on a free localhost port, backed by real SQLite or
PostgreSQL (STRATA_TEST_DATABASE=sqlite|postgresql), real FAISS and the real Lite0 weights."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from indexer.settings import Settings
from service.client import StrataClient
from service.server import RunningServer, create_server

POSTGRES_ADMIN_URL = os.environ.get(
    "STRATA_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA; this machine has no GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def database_kind() -> str:
    kind = os.environ.get("STRATA_TEST_DATABASE", "sqlite")
    if kind not in ("sqlite", "postgresql"):
        raise pytest.UsageError(f"STRATA_TEST_DATABASE={kind!r}: use sqlite or postgresql")
    return kind


@pytest.fixture(scope="session")
def new_database_url(
    database_kind: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], str]]:
    """A factory of empty databases of the kind under test; dropped at the end."""
    created: list[str] = []

    def make() -> str:
        if database_kind == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('db') / 'strata.db'}"
        import psycopg

        name = f"strata_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        created.append(name)
        return POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace(
            "postgresql://", "postgresql+psycopg://"
        ) + f"/{name}"

    yield make
    if created:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            for name in created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class ServerHandle:
    """A server running on its own event loop thread, as a separate process would."""

    running: RunningServer
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    settings: Settings

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def client(self, **kwargs: Any) -> StrataClient:
        return StrataClient(self.address, **kwargs)

    def stop(self, grace: float = 1.0) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(grace), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_server(settings: Settings) -> ServerHandle:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name="test-server")
    thread.start()
    future = asyncio.run_coroutine_threadsafe(create_server(settings, "127.0.0.1:0"), loop)
    return ServerHandle(future.result(120), loop, thread, settings)


@pytest.fixture(scope="session")
def make_server(
    tmp_path_factory: pytest.TempPathFactory, new_database_url: Callable[[], str]
) -> Iterator[Callable[..., ServerHandle]]:
    """Start extra servers with their own data folder and database; stopped at the end."""
    started: list[ServerHandle] = []

    def make(**overrides: Any) -> ServerHandle:
        data_dir: Path = overrides.pop("data_dir", None) or tmp_path_factory.mktemp("data")
        database_url = overrides.pop("database_url", None) or new_database_url()
        settings = Settings.load(
            env={}, data_dir=data_dir, database_url=database_url, device="cpu", **overrides
        )
        handle = start_server(settings)
        started.append(handle)
        return handle

    yield make
    for handle in started:
        if handle.thread.is_alive():
            handle.stop(0)


@pytest.fixture(scope="session")
def server(make_server: Callable[..., ServerHandle]) -> ServerHandle:
    """The shared server most tests talk to."""
    return make_server()


@pytest.fixture
def client(server: ServerHandle) -> Iterator[StrataClient]:
    with server.client(timeout=300) as c:
        yield c


@pytest.fixture
def collection(client: StrataClient) -> Iterator[str]:
    """A fresh collection (Lite0, edges/parts/semantics, avg pooling), deleted afterwards."""
    name = f"c-{uuid.uuid4().hex[:10]}"
    client.create_collection(name)
    yield name
    client.delete_collection(name)
