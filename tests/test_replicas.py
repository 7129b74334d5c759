"""Several `strata serve` processes on one database answer alike (docs/REPLICAS.md): a photo
added through one is found by the other's FAISS index within 5 s, a delete leaves both
indexes, a replica started or restarted after the writes catches up, and health says
NOT_SERVING while a replica lags. Real processes, real database (SQLite file in WAL mode,
or PostgreSQL with STRATA_TEST_DATABASE=postgresql), real Lite0, real photos."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import ServeProcess, free_port
from photos import colour_photos, jpeg

from service.client import ImageToAdd, StrataClient

#: The promise of the issue: a change through any replica is searchable on every one within.
WITHIN_S = 5.0
DEPTH = "semantics"


def photo(name: str) -> bytes:
    return jpeg(colour_photos()[name], 90)


@pytest.fixture(scope="module")
def database_url(new_database_url: Callable[[], str]) -> str:
    return new_database_url()


@pytest.fixture(scope="module")
def replicas(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[ServeProcess]]:
    """Two replicas, each with its own data folder (its own FAISS files), on one database;
    both serve metrics so the tests can read their index sizes."""
    logs = tmp_path_factory.mktemp("replica-logs")
    started = []
    for n in range(2):
        process = ServeProcess(
            tmp_path_factory.mktemp(f"replica-{n}"),
            database_url,
            {"STRATA_REPLICA_POLL_S": "0.3", "STRATA_METRICS_LISTEN": f"127.0.0.1:{free_port()}"},
            logs,
        )
        started.append(process)
        process.start()
    yield started
    for process in started:
        process.kill()


def metrics_of(process: ServeProcess) -> str:
    address = process.env["STRATA_METRICS_LISTEN"]
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        return str(response.read().decode())


def index_vectors(process: ServeProcess, collection: str, depth: str = DEPTH) -> int | None:
    """The replica's own FAISS index size, from its metrics (None: not opened)."""
    prefix = f'strata_index_vectors{{collection="{collection}",depth="{depth}",'
    for line in metrics_of(process).splitlines():
        if line.startswith(prefix):
            return int(float(line.rsplit(" ", 1)[1]))
    return None


def top_uri(client: StrataClient, collection: str, image: bytes) -> str | None:
    results = client.search(collection, [image], depths=[DEPTH], k=1)
    hits = results[0].results[0].hits
    return hits[0].uri if hits else None


def wait_for(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until `check()` held; fails after `timeout`."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if check():
            return time.monotonic() - began
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def add(client: StrataClient, collection: str, uri: str, data: bytes) -> int:
    (result,) = client.add_images(collection, [ImageToAdd(uri, data)])
    assert result.status == "added", result
    return int(result.id)


def test_each_replica_finds_a_photo_added_through_the_other(replicas: list[ServeProcess]) -> None:
    a, b = replicas
    name = f"r-{uuid.uuid4().hex[:8]}"
    with a.client(timeout=300) as ca, b.client(timeout=300) as cb:
        ca.create_collection(name)
        # Both open the (empty) index first, so what they find later is what they followed,
        # not a fresh read of SQL at first use.
        assert top_uri(ca, name, photo("coffee")) is None
        assert top_uri(cb, name, photo("coffee")) is None
        cat_id = add(ca, name, "cat.jpg", photo("chelsea"))
        seconds = wait_for(lambda: top_uri(cb, name, photo("chelsea")) == "cat.jpg", WITHIN_S)
        print(f"replica B found A's photo after {seconds:.2f} s")
        cup_id = add(cb, name, "cup.jpg", photo("coffee"))
        wait_for(lambda: top_uri(ca, name, photo("coffee")) == "cup.jpg", WITHIN_S)
        assert index_vectors(a, name) == index_vectors(b, name) == 2

        # A delete through B leaves A's FAISS index too (SQL hides it from results at once;
        # the index size shows the follower removed the vector).
        assert cb.delete_items(name, [cat_id]) == [cat_id]
        wait_for(lambda: index_vectors(a, name) == 1, WITHIN_S)
        assert index_vectors(b, name) == 1
        for client in (ca, cb):
            hits = client.search(name, [photo("chelsea")], depths=[DEPTH], k=5)[0].results[0]
            assert [h.id for h in hits.hits] == [cup_id]
        ca.delete_collection(name)
        # Dropping the collection through A drops B's indexes of it.
        wait_for(lambda: "1 collection(s) dropped" in b.log(20_000), WITHIN_S)


def test_replica_started_or_restarted_after_the_writes_catches_up(
    replicas: list[ServeProcess], database_url: str, tmp_path: Path
) -> None:
    a, b = replicas
    name = f"r-{uuid.uuid4().hex[:8]}"
    with a.client(timeout=300) as ca:
        ca.create_collection(name)
        kept = add(ca, name, "astronaut.jpg", photo("astronaut"))
        gone = add(ca, name, "rocket.jpg", photo("rocket"))
    b.kill()
    with a.client(timeout=300) as ca:
        ca.delete_items(name, [gone])
        late = add(ca, name, "cat.jpg", photo("chelsea"))
    b.start()  # the same data folder: its saved files predate the writes above
    newcomer = ServeProcess(tmp_path / "late", database_url, {}, tmp_path)
    newcomer.start()
    try:
        for process in (b, newcomer):
            with process.client(timeout=300) as client:
                assert top_uri(client, name, photo("chelsea")) == "cat.jpg"
                assert top_uri(client, name, photo("astronaut")) == "astronaut.jpg"
                hits = client.search(name, [photo("rocket")], depths=[DEPTH], k=10)
                assert sorted(h.id for h in hits[0].results[0].hits) == sorted([kept, late])
        assert index_vectors(b, name) == 2
    finally:
        newcomer.kill()
        with a.client(timeout=300) as ca:
            ca.delete_collection(name)


def test_health_is_not_serving_while_a_replica_lags(
    replicas: list[ServeProcess], database_url: str, tmp_path: Path
) -> None:
    """A replica that applies the log only every 8 s but may lag 1 s: after a write through
    another replica it reports NOT_SERVING until it has applied it, then SERVING again."""
    a = replicas[0]
    name = f"r-{uuid.uuid4().hex[:8]}"
    slow = ServeProcess(
        tmp_path / "slow",
        database_url,
        {"STRATA_REPLICA_POLL_S": "8", "STRATA_REPLICA_MAX_LAG_S": "1"},
        tmp_path,
    )
    slow.start()
    try:
        with a.client(timeout=300) as ca, slow.client(timeout=300) as cs:
            ca.create_collection(name)
            assert top_uri(cs, name, photo("coffee")) is None  # opened before the write
            assert slow.health() == "SERVING"
            add(ca, name, "cup.jpg", photo("coffee"))
            wait_for(lambda: slow.health() == "NOT_SERVING", 6.0)
            wait_for(lambda: slow.health() == "SERVING", 12.0)
            assert top_uri(cs, name, photo("coffee")) == "cup.jpg"
            ca.delete_collection(name)
    finally:
        slow.kill()
