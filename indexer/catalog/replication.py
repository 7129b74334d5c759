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

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.catalog.context import Context
from indexer.store import change_log, repository
from indexer.store.change_log import ChangeRow
from indexer.store.index_files import Manifest, manifest_path
from indexer.store.models import Collection
from indexer.store.shared_builds import BuilderElection, SharedBuilds
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
        # One builder among the replicas when they share a folder (shared_builds).
        shared = settings.shared_index_dir
        self.shared = SharedBuilds(Path(shared)) if shared else None
        self.election = BuilderElection(ctx.engine, Path(shared)) if shared else None
        self._adopted: dict[tuple[int, str], float] = {}  # shared file stamp adopted
        self.adoptions = 0

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
        # Start-up (reconcile, engine warm-up) ran since start_position(); unmeasured, that
        # time would count as lag and flip health to NOT_SERVING just after SERVING.
        try:
            self._measure()
        except Exception:
            log.warning("replica follower: cannot measure the lag yet; retrying", exc_info=True)
        self._thread = threading.Thread(target=self._run, name="replica-follower", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self.election is not None:
            self.election.close()

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
        builder = self.election is not None and self.election.is_builder()
        for collection_id, changes in by_collection.items():
            if any(c.op == change_log.DROP for c in changes):
                self.ctx.indexes.drop_collection(collection_id)
                if builder and self.shared is not None:
                    self.shared.drop(collection_id)
                dropped += 1
                continue
            if builder:
                self._open_all(collection_id)  # it must see every index grow to rebuild it
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

    # -- one builder, shared files -------------------------------------------------------

    def share_builds(self) -> int:
        """Hook the loaded indexes to the builder election; a non-builder adopts builds
        newer than its own. Returns how many builds were adopted."""
        if self.election is None or self.shared is None:
            return 0
        election, shared = self.election, self.shared
        builder = election.is_builder()
        adopted = 0
        for (collection_id, depth), index in self.ctx.indexes.loaded().items():
            if index.rebuild_gate is None:
                index.rebuild_gate = election.is_builder
                index.on_rebuilt = self._publisher(collection_id, depth)
            if builder:
                index.maybe_rebuild()  # one a non-builder skipped before it became builder
                continue
            stamp = shared.stamp(collection_id, depth)
            if stamp <= self._adopted.get((collection_id, depth), 0.0):
                continue
            if _report_on_file(shared.path_for(collection_id, depth)) == index.built:
                self._adopted[(collection_id, depth)] = stamp  # the same build: nothing to do
                continue
            built = shared.read(collection_id, depth, index.dim)
            if built is None:
                continue

            def fill(
                ids: np.ndarray, cid: int = collection_id, name: str = depth, dim: int = index.dim
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
                with self.ctx.sessions() as session:
                    yield from repository.iter_vectors(session, cid, name, dim, ids)

            if index.adopt(built, fill):
                self._adopted[(collection_id, depth)] = stamp
                adopted += 1
                log.info(
                    "adopted the builder's %s index of (%d, %s): %d vectors, trained on %d",
                    built.report.kind,
                    collection_id,
                    depth,
                    index.ntotal,
                    built.report.vectors,
                )
        self.adoptions += adopted
        return adopted

    def _publisher(self, collection_id: int, depth: str) -> Callable[[VectorIndex], None]:
        def publish(index: VectorIndex) -> None:
            if self.shared is None or self.election is None or not self.election.is_builder():
                return
            index.save(self.shared.path_for(collection_id, depth))
            index.save(self.ctx.indexes.path_for(collection_id, depth))
            log.info("published the %s build of (%d, %s)", index.kind, collection_id, depth)

        return publish

    def _open_all(self, collection_id: int) -> None:
        with self.ctx.sessions() as session:
            collection = session.get(Collection, collection_id)
            depths = [(d.name, d.dim) for d in collection.depths] if collection else []
        for name, dim in depths:
            self.ctx.indexes.get(collection_id, name, dim)

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
                if self.ctx.indexes.relevel_unsure():
                    log.warning("re-levelled indexes with SQL after a write whose commit was lost")
                self.share_builds()
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


def _report_on_file(path: Path) -> object:
    try:
        return Manifest.from_json(json.loads(manifest_path(path).read_text())).built
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _plus(a: Applied, b: Applied) -> Applied:
    return Applied(a.rows + b.rows, a.added + b.added, a.removed + b.removed, a.dropped + b.dropped)
