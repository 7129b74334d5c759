"""A replica's follower: applies the change log's rows written by other processes (other
replicas, Ray ingest) to this process's live FAISS indexes, and measures how far behind it is.

Design (docs/REPLICAS.md): SQL stays the source of truth. `start_position` is read before the
start-up reconcile, so every change the reconcile may have missed is past it. Each poll reads
the committed rows past the last applied seq, then snapshots the indexes opened so far:
an index opened after that snapshot read SQL after those rows committed and holds them.
Adds are applied only for ids an index lacks (the reconcile or a concurrent open may already
hold them), removals are idempotent. Rows this process wrote are skipped: it updated its
indexes itself right after committing them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.catalog.context import Context
from indexer.store import change_log, repository
from indexer.store.change_log import ChangeRow
from indexer.store.vector_index import VectorIndex

log = logging.getLogger(__name__)

#: Change rows read per query; a follower far behind loops until it reaches the head.
READ_BATCH = 5_000
#: How often old rows are pruned (every replica may do it; deleting twice is harmless).
PRUNE_EVERY_S = 600.0


@dataclass(frozen=True)
class Applied:
    """What one poll did."""

    rows: int
    added: int
    removed: int
    dropped: int


class Follower:
    """Keeps `ctx.indexes` level with the change log, in a background thread."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        settings = ctx.settings
        self.poll_s = settings.replica_poll_s
        self.retention_s = settings.replica_log_retention_s
        self.applied_seq = 0
        # Unix time of the oldest change not applied yet (None: caught up), and when that
        # was last measured: the lag is measured against the database, not guessed.
        self._behind_since: float | None = None
        self._checked_at = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_prune = 0.0
        self._lock = threading.Lock()  # one poll at a time (the thread, or catch_up())
        self.totals = Applied(0, 0, 0, 0)

    # -- life cycle -----------------------------------------------------------------------

    def start_position(self) -> int:
        """Remember the log's head as applied. Call it before the start-up reconcile."""
        with self.ctx.sessions() as session:
            self.applied_seq = change_log.head(session)
        self._checked_at = time.time()
        return self.applied_seq

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="replica-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- lag ------------------------------------------------------------------------------

    def lag_s(self, now: float | None = None) -> float:
        """Seconds this replica is behind: the age of the oldest change it has not applied,
        or, when it has not been able to look for a while, the time since it last did."""
        now = time.time() if now is None else now
        behind = 0.0 if self._behind_since is None else now - self._behind_since
        unseen = now - self._checked_at - 2 * min(self.poll_s, 1.0)
        return max(0.0, behind, unseen)

    # -- applying -------------------------------------------------------------------------

    def catch_up(self) -> Applied:
        """Apply every committed change past the applied seq; returns what was done."""
        with self._lock:
            total = Applied(0, 0, 0, 0)
            while True:
                with self.ctx.sessions() as session:
                    rows = change_log.read_after(session, self.applied_seq, READ_BATCH)
                if not rows:
                    break
                done = self._apply(rows)
                self.applied_seq = rows[-1].seq
                total = _plus(total, done)
                if len(rows) < READ_BATCH:
                    break
            self.totals = _plus(self.totals, total)
            self._measure()
            return total

    def _measure(self) -> None:
        with self.ctx.sessions() as session:
            self._behind_since = change_log.oldest_pending(
                session, self.applied_seq, self.ctx.origin
            )
        self._checked_at = time.time()

    def _apply(self, rows: Sequence[ChangeRow]) -> Applied:
        foreign = [r for r in rows if r.origin != self.ctx.origin]
        by_collection: dict[int, list[ChangeRow]] = defaultdict(list)
        for row in foreign:
            by_collection[row.collection_id].append(row)
        added = removed = dropped = 0
        for collection_id, changes in by_collection.items():
            if any(c.op == change_log.DROP for c in changes):
                self.ctx.indexes.drop_collection(collection_id)
                dropped += 1
                continue
            deleted = np.array(
                sorted({c.item_id for c in changes if c.op == change_log.DELETE and c.item_id}),
                dtype=np.int64,
            )
            new = np.array(
                sorted(
                    {c.item_id for c in changes if c.op == change_log.ADD and c.item_id}
                    - set(deleted.tolist())
                ),
                dtype=np.int64,
            )
            # After reading the rows (see the module doc): indexes opened later hold them.
            for (_, depth), index in self.ctx.indexes.loaded(collection_id).items():
                removed += index.remove(deleted)
                added += self._add_from_sql(collection_id, depth, index, new)
        if foreign:
            log.info(
                "replica applied %d change(s) from other writers: +%d -%d vectors, %d "
                "collection(s) dropped (seq %d)",
                len(foreign),
                added,
                removed,
                dropped,
                rows[-1].seq,
            )
        return Applied(len(rows), added, removed, dropped)

    def _add_from_sql(
        self, collection_id: int, depth: str, index: VectorIndex, ids: np.ndarray
    ) -> int:
        if len(ids) == 0:
            return 0
        ids = ids[~np.isin(ids, index.ids())]
        added = 0
        with self.ctx.sessions() as session:
            for chunk_ids, matrix in repository.iter_vectors(
                session, collection_id, depth, index.dim, ids
            ):
                index.add(chunk_ids, matrix)
                added += len(chunk_ids)
        return added

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        # The lag is measured every second even when changes are applied less often.
        tick = min(self.poll_s, 1.0)
        next_poll = time.monotonic() + self.poll_s
        while not self._stop.wait(tick):
            try:
                if time.monotonic() < next_poll:
                    self._measure()
                    continue
                next_poll = time.monotonic() + self.poll_s
                self.catch_up()
                self._maybe_prune()
            except Exception:
                # The database may be away for a while; the lag grows and health says so.
                log.exception("replica follower: applying the change log failed; retrying")

    def _maybe_prune(self) -> None:
        now = time.time()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY_S
        with self.ctx.sessions.begin() as session:
            pruned = change_log.prune(session, now - self.retention_s)
        if pruned:
            log.info("pruned %d change-log row(s) older than %.0f s", pruned, self.retention_s)


def _plus(a: Applied, b: Applied) -> Applied:
    return Applied(a.rows + b.rows, a.added + b.added, a.removed + b.removed, a.dropped + b.dropped)
