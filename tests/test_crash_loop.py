"""The crash loop: two concurrent AddImages streams and a searcher against a `strata serve`
process that is SIGKILLed at seeded random moments, at least 20 times (Qdrant's crasher,
shortened to fit CI). After every restart:

- every acknowledged item is present (same uri, same id) and finds itself first at every depth;
- no phantom (an item whose uri was never sent) and no duplicate (uri + content);
- the live index size equals the SQL count at every depth (`collections show` reports both);
- finishing the ingest gives exactly one item per file.

The seed is printed; STRATA_CRASH_SEED=N replays a run, STRATA_CRASH_KILLS=N changes the count.
The two streams send the same files in different orders, so they also race on the same uris.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import ServeProcess
from sqlalchemy import create_engine, select

from indexer.store.models import Collection, Item
from service.client import ImageToAdd, StrataClientError

COLLECTION = "crashloop"
FILES = 300
KILLS = int(os.environ.get("STRATA_CRASH_KILLS") or 20)
#: Codes a call may end with while the server is being killed or is starting.
GONE = {"UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED"}


@dataclass
class Ledger:
    """What the clients were told, shared by the stream threads (under `lock`)."""

    acked: dict[str, int] = field(default_factory=dict)  # uri -> id acknowledged
    unexpected: list[str] = field(default_factory=list)  # errors no kill explains
    searches: int = 0
    acks: int = 0  # acknowledgements received, all rounds
    lock: threading.Lock = field(default_factory=threading.Lock)


def stream_until_gone(
    server: ServeProcess, files: list[tuple[str, bytes]], ledger: Ledger, stop: threading.Event
) -> None:
    """Send the files not yet acknowledged, recording each acknowledgement, until the stream
    ends (all sent) or breaks (the server was killed) or `stop` is set."""
    with ledger.lock:
        todo = [(u, d) for u, d in files if u not in ledger.acked]
    if not todo:
        return

    def images() -> Iterator[ImageToAdd]:
        for uri, data in todo:
            if stop.is_set():
                return
            yield ImageToAdd(uri, data)

    try:
        with server.client(timeout=120) as client:
            for result in client.add_images(COLLECTION, images()):
                with ledger.lock:
                    ledger.acks += 1
                    if result.status in ("added", "unchanged"):
                        previous = ledger.acked.setdefault(result.uri, result.id)
                        if previous != result.id:
                            ledger.unexpected.append(
                                f"{result.uri}: id {previous} then {result.id}"
                            )
                    else:
                        ledger.unexpected.append(f"{result.uri}: {result.status} {result.error}")
    except StrataClientError as exc:
        if exc.code not in GONE:
            with ledger.lock:
                ledger.unexpected.append(f"AddImages: {exc.code}: {exc.details}")


def search_until_gone(
    server: ServeProcess, queries: list[bytes], ledger: Ledger, stop: threading.Event
) -> None:
    rng = random.Random(len(queries))
    with server.client(timeout=30) as client:
        while not stop.is_set():
            try:
                client.search(COLLECTION, [rng.choice(queries)], k=5)
                with ledger.lock:
                    ledger.searches += 1
            except StrataClientError as exc:
                if exc.code in GONE:
                    return
                with ledger.lock:
                    ledger.unexpected.append(f"Search: {exc.code}: {exc.details}")
                return


def run_load(
    server: ServeProcess,
    orders: list[list[tuple[str, bytes]]],
    ledger: Ledger,
    seconds: float | None,
) -> None:
    """Two streams and a searcher; after `seconds` SIGKILL the server (None: run to the end)."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=stream_until_gone, args=(server, order, ledger, stop))
        for order in orders
    ]
    threads.append(
        threading.Thread(
            target=search_until_gone, args=(server, [d for _, d in orders[0][:20]], ledger, stop)
        )
    )
    for thread in threads:
        thread.start()
    if seconds is None:
        for thread in threads[:-1]:
            thread.join(600)
        stop.set()
    else:
        # The clock starts at this round's first acknowledgement: a kill while the model is
        # still loading would test start-up again and again, not the ingest.
        with ledger.lock:
            before = ledger.acks
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(t.is_alive() for t in threads[:-1]):
            with ledger.lock:
                if ledger.acks > before:
                    break
            time.sleep(0.02)
        time.sleep(seconds)
        server.kill()
        stop.set()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive(), "a client thread hung"


def sql_items(database_url: str) -> list[tuple[int, str, str]]:
    """(id, uri, content hash) of every item of the collection, straight from SQL."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            collection_id = connection.scalar(
                select(Collection.id).where(Collection.name == COLLECTION)
            )
            rows = connection.execute(
                select(Item.id, Item.uri, Item.content_hash).where(
                    Item.collection_id == collection_id
                )
            )
            return [(int(i), str(u), str(h)) for i, u, h in rows]
    finally:
        engine.dispose()


def check_after_restart(server: ServeProcess, ledger: Ledger, sent: set[str]) -> int:
    items = sql_items(server.database_url)
    by_id = {item_id: uri for item_id, uri, _ in items}
    uris = [uri for _, uri, _ in items]
    assert len(uris) == len(set(uris)), "duplicate uri"
    assert len({(u, h) for _, u, h in items}) == len(items), "duplicate uri + content"
    assert set(uris) <= sent, f"phantom items: {sorted(set(uris) - sent)[:5]}"
    with ledger.lock:
        acked = dict(ledger.acked)
    for uri, item_id in acked.items():
        assert by_id.get(item_id) == uri, f"acknowledged {uri} (id {item_id}) is missing"
    with server.client(timeout=300) as client:
        info = client.get_collection(COLLECTION)
        assert info.items == len(items)
        for depth in info.depths:
            assert depth.vectors == len(items), (depth.name, depth.vectors, len(items))
            assert depth.index_vectors == depth.vectors, (
                f"{depth.name}: live index {depth.index_vectors} != SQL {depth.vectors}"
            )
        ids = sorted(acked.values())
        for start in range(0, len(ids), 200):
            chunk = ids[start : start + 200]
            for item_id, result in zip(chunk, client.search(COLLECTION, chunk, k=3), strict=True):
                for depth_hits in result.results:
                    hits = depth_hits.hits
                    assert hits, (item_id, depth_hits.depth)
                    # First, or tied for first with an identical-looking crop.
                    top = [h.id for h in hits if h.score >= hits[0].score - 1e-5]
                    assert item_id in top, (item_id, depth_hits.depth, hits)
    return len(items)


class ForkedServe(ServeProcess):
    """`strata serve` forked from tests/serve_zygote.py, which imported it once: a restart
    costs the server's own start-up, not importing torch again (10-20 s on a busy machine)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env.update({"STRATA_DEVICE": "cpu", **self.env})
        self.zygote = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("serve_zygote.py"))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=Path.cwd(),
        )
        self.child = 0

    def _ask(self, line: str) -> str:
        assert self.zygote.stdin is not None and self.zygote.stdout is not None
        self.zygote.stdin.write(line + "\n")
        self.zygote.stdin.flush()
        return self.zygote.stdout.readline().strip()

    @property
    def pid(self) -> int:
        return self.child

    def start(self, timeout: float = 180.0) -> float:
        began = time.monotonic()
        with open(self.log_path, "a") as log:
            log.write(f"\n=== start {self.starts} ===\n")
        argv = ["serve", "--listen", self.address, "--data", str(self.data_dir)]
        argv += ["--database", self.database_url]
        self.child = int(self._ask(f"start {self.log_path} {' '.join(argv)}").split()[1])
        self.starts += 1
        while time.monotonic() - began < timeout:
            state = self._ask("poll")
            if state != "alive":
                raise RuntimeError(f"strata serve {state}:\n{self.log()}")
            if self.health() == "SERVING":
                return time.monotonic() - began
            time.sleep(0.1)
        self.kill()
        raise TimeoutError(f"strata serve not ready after {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        if self.child:
            self._ask("kill")
            self.child = 0

    def close(self) -> None:
        self.kill()
        if self.zygote.stdin is not None:
            self.zygote.stdin.close()
        self.zygote.wait(30)


@pytest.fixture
def forked_serve(
    tmp_path: Path, new_database_url: Callable[[], str]
) -> Iterator[Callable[..., ForkedServe]]:
    started: list[ForkedServe] = []

    def make(**env: str) -> ForkedServe:
        server = ForkedServe(tmp_path / "data", new_database_url(), dict(env), tmp_path)
        started.append(server)
        server.start()
        return server

    yield make
    for server in started:
        server.close()


@pytest.mark.slow
def test_crash_loop_keeps_every_acknowledged_item(
    forked_serve: Callable[..., ForkedServe],
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
) -> None:
    files = small_jpegs(FILES, 13, (32, 64))
    sent = {u for u, _ in files}
    seed = int(os.environ.get("STRATA_CRASH_SEED") or random.SystemRandom().randrange(10**6))
    print(f"crash-loop seed {seed} ({KILLS} kills)")
    rng = random.Random(seed)
    # Frequent saves, so kills also land in the middle of index writes.
    server = forked_serve(STRATA_INDEX_SAVE_INTERVAL_S="0.4", STRATA_BATCH_SIZE="8")
    with server.client(timeout=120) as client:
        client.create_collection(COLLECTION)
    ledger = Ledger()
    counts = []
    began = time.monotonic()
    for kill in range(KILLS):
        orders = [rng.sample(files, len(files)), rng.sample(files, len(files))]
        run_load(server, orders, ledger, seconds=rng.uniform(0.0, 1.5))
        restart_s = server.start()
        stored = check_after_restart(server, ledger, sent)
        counts.append((len(ledger.acked), stored))
        print(
            f"kill {kill + 1}: {len(ledger.acked)} acknowledged, {stored} stored, "
            f"restart {restart_s:.1f}s"
        )
    # Finish: every file exactly once.
    run_load(server, [files, files[::-1]], ledger, seconds=None)
    stored = check_after_restart(server, ledger, sent)
    assert stored == len(files) == len(ledger.acked)
    assert not ledger.unexpected, ledger.unexpected[:10]
    assert ledger.searches > 0
    print(
        f"crash-loop seed {seed}: {KILLS} kills in {time.monotonic() - began:.0f}s, "
        f"{ledger.searches} searches; (acknowledged, stored) after each: {counts}"
    )
