"""What a replica holds, for metrics: the size of every index it has opened."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from indexer.catalog.context import Context
from indexer.store import repository

#: How long a scrape waits for collection names it has not seen before.
NAMES_WAIT_S = 1.0


@dataclass(frozen=True)
class IndexSize:
    collection: str
    depth: str
    kind: str
    vectors: int


class IndexSizes:
    """One row per opened (collection, depth) index, named from a cache of collection
    names: a scrape reads SQL only for collections it has not named yet, and waits for
    that read at most NAMES_WAIT_S. /metrics is the liveness probe (deploy/helm): one that
    queued on a locked or stalled database got healthy pods restarted."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._names: dict[int, str] = {}  # collection ids are never reused for another name
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="metrics-names")
        self._pending: Future[dict[int, str]] | None = None
        self._lock = threading.Lock()

    def __call__(self) -> list[IndexSize]:
        loaded = self.ctx.indexes.loaded()
        if any(collection_id not in self._names for collection_id, _ in loaded):
            self._refresh_names()
        return [
            IndexSize(self._names[collection_id], depth, index.kind, index.ntotal)
            for (collection_id, depth), index in sorted(loaded.items())
            if collection_id in self._names
        ]

    def _refresh_names(self) -> None:
        with self._lock:
            if self._pending is None or self._pending.done():
                self._pending = self._reader.submit(self._read_names)
            pending = self._pending
        try:
            names = pending.result(timeout=NAMES_WAIT_S)
        except FutureTimeout:
            return  # the database is slow: report what is named; a later scrape reads on
        # Deleted collections drop out: a replica drops their indexes when it applies that.
        self._names = names

    def _read_names(self) -> dict[int, str]:
        with self.ctx.sessions() as session:
            return {c.id: c.name for c in repository.list_collections(session)}
