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
from helpers import free_port

from service.client import StrataClient
from service.server import RunningServer, create_server
from service.settings import ServiceSettings

POSTGRES_ADMIN_URL = os.environ.get(
    "STRATA_TEST_POSTGRES_ADMIN", "postgresql://postgres@127.0.0.1:5432/test"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    # Tests that touch no database run in the SQLite pass only: the PostgreSQL pass would
    # repeat them unchanged (the suite runs once per database, see tests/run.sh).
    if os.environ.get("STRATA_TEST_DATABASE") == "postgresql":
        kept = [item for item in items if "database_free" not in item.keywords]
        if len(kept) < len(items):
            config.hook.pytest_deselected(items=[i for i in items if i not in kept])
            items[:] = kept
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
        return (
            POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
            + f"/{name}"
        )

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
    settings: ServiceSettings

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def client(self, **kwargs: Any) -> StrataClient:
        return StrataClient(self.address, **kwargs)

    def stop(self, grace: float = 1.0) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(grace), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def start_server(settings: ServiceSettings) -> ServerHandle:
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
        # The suite starts dozens of servers; tests/test_warmup.py checks the warm-up itself.
        overrides.setdefault("warm_up", False)
        settings = ServiceSettings.load(
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


# -- `strata serve` as a separate process (for tests that kill it or measure its memory) --


class ServeProcess:
    """`python -m service.cli serve` on a fixed localhost port; restartable on the same data.

    `env` holds STRATA_* settings for the process; the test runner's own STRATA_* variables
    are not passed on, so only what the test sets applies."""

    def __init__(self, data_dir: Path, database_url: str, env: dict[str, str], log_dir: Path):
        self.data_dir = data_dir
        self.database_url = database_url
        self.env = env
        self.port = free_port()
        self.log_path = log_dir / f"serve-{self.port}.log"
        self.process: Any = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def client(self, **kwargs: Any) -> StrataClient:
        return StrataClient(self.address, **kwargs)

    def start(self, timeout: float = 180.0) -> float:
        """Start and wait until health says SERVING; returns the seconds that took."""
        import subprocess
        import sys
        import time

        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env.update({"STRATA_DEVICE": "cpu", **self.env})
        command = [
            sys.executable,
            "-m",
            "service.cli",
            "serve",
            "--listen",
            self.address,
            "--data",
            str(self.data_dir),
            "--database",
            self.database_url,
        ]
        began = time.monotonic()
        with open(self.log_path, "a") as log:
            log.write(f"\n=== start {self.starts} ===\n")
            log.flush()
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=Path.cwd()
            )
        self.starts += 1
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"strata serve exited ({self.process.returncode}):\n{self.log()}"
                )
            if self.health() == "SERVING":
                return time.monotonic() - began
            time.sleep(0.2)
        self.kill()
        raise TimeoutError(f"strata serve not ready after {timeout}s:\n{self.log()}")

    def health(self, timeout: float = 1.0) -> str:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(self.address) as channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=timeout
                )
            except grpc.RpcError:
                return "UNREACHABLE"
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a power cut of the process."""
        import signal

        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(30)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the graceful path. Returns the exit status."""
        import signal

        self.process.send_signal(signal.SIGTERM)
        return int(self.process.wait(timeout))

    def memory_kb(self) -> dict[str, int]:
        """VmRSS (now) and VmHWM (peak) of the server process, in kB, from /proc."""
        values = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        return values

    def log(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]


@pytest.fixture
def serve_process(
    tmp_path: Path, new_database_url: Callable[[], str]
) -> Iterator[Callable[..., ServeProcess]]:
    """Start `strata serve` processes (fresh data folder and database unless given);
    killed at the end of the test."""
    started: list[ServeProcess] = []

    def make(
        data_dir: Path | None = None, database_url: str | None = None, **env: str
    ) -> ServeProcess:
        process = ServeProcess(
            data_dir or tmp_path / f"data-{len(started)}",
            database_url or new_database_url(),
            dict(env),
            tmp_path,
        )
        started.append(process)
        process.start()
        return process

    yield make
    for process in started:
        process.kill()


# -- small real photos --------------------------------------------------------------------


def small_photo_jpegs(
    count: int, seed: int = 0, sides: tuple[int, int] = (96, 160)
) -> list[tuple[str, bytes]]:
    """`count` distinct small JPEGs (uri, bytes): random crops of scikit-image's photos,
    some mirrored, sides in `sides`. Real textures, cheap to embed, deterministic per seed."""
    import hashlib
    import io
    import random

    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    sources = [
        skdata.astronaut(),
        skdata.chelsea(),
        skdata.coffee(),
        skdata.rocket(),
        skdata.hubble_deep_field(),
        skdata.retina(),
        skdata.immunohistochemistry(),
        skdata.stereo_motorcycle()[0],
        skdata.camera(),
        skdata.brick(),
        skdata.grass(),
        skdata.gravel(),
        skdata.coins(),
        skdata.clock(),
        skdata.page(),
    ]
    photos = [Image.fromarray(np.asarray(a)).convert("RGB") for a in sources]
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    while len(out) < count:
        photo = photos[rng.randrange(len(photos))]
        side = rng.randint(*sides)
        side = min(side, photo.width, photo.height)
        left, top = rng.randint(0, photo.width - side), rng.randint(0, photo.height - side)
        crop = photo.crop((left, top, left + side, top + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        crop.save(buffer, "JPEG", quality=rng.randint(82, 95))
        data = buffer.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        out.append((f"photos/{seed}/{len(out):04d}.jpg", data))
    return out


@pytest.fixture(scope="session")
def small_jpegs() -> Callable[..., list[tuple[str, bytes]]]:
    """The `small_photo_jpegs` builder, cached per (count, seed, sides)."""
    import functools

    return functools.cache(small_photo_jpegs)
