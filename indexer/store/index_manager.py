"""Keeps one VectorIndex per (collection, depth), loaded or rebuilt from SQL, saved to disk.

SQL is the source of truth. On first use an index file is verified against its manifest
and reconciled with SQL (ids SQL has that the file lacks are added, ids it no longer has
are removed); a missing, torn or corrupt file is rebuilt from SQL, never served.

Each index's kind follows the collection's size under one IndexPolicy (exact Flat, then IVF
retrained as it grows; see index_policy); searches run on a GPU copy when the device
setting and the FAISS build allow it.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from indexer.core.errors import ResourceExhausted
from indexer.store import repository
from indexer.store.faiss_device import device_copier
from indexer.store.index_files import IndexFileError, temporary_writer
from indexer.store.index_policy import IndexPolicy, VectorSource, build_index
from indexer.store.vector_index import VectorIndex

log = logging.getLogger(__name__)

#: Periodic saves of an index take at most 1/SAVE_DUTY of the time: one whose last save took
#: 6 s (a million 1,280-dim vectors) is saved every 2 minutes, not every 30 s, so writing
#: gigabytes does not stall ingest. Safe: SQL holds every vector, and a restart adds what the
#: file lacks (reconcile).
SAVE_DUTY = 20.0


class IndexManager:
    def __init__(
        self,
        root: Path,
        sessions: sessionmaker[Session],
        policy: IndexPolicy | None = None,
        device: str = "cpu",
    ):
        self.root = root
        self._sessions = sessions
        self.policy = policy or IndexPolicy()
        self._to_device = device_copier(device)
        self._indexes: dict[tuple[int, str], VectorIndex] = {}
        self._lock = threading.Lock()
        self.rebuilds = 0  # how many indexes had to be rebuilt from SQL (for logs and tests)
        #: The last save's failure (None when every dirty index was saved).
        self.save_error: OSError | None = None
        #: (monotonic time, seconds) of each index's last save, for throttled saves.
        self.last_saves: dict[tuple[int, str], tuple[float, float]] = {}
        self._writes: dict[int, threading.Lock] = {}
        #: Collections where a write of this process may have committed without its index
        #: update (the connection lost during COMMIT): relevel_unsure() repairs them.
        self._unsure: set[int] = set()

    def sweep_temporary_files(self) -> int:
        """Remove the temporary files of saves that a killed process left behind; a live
        process's own saves in progress are left alone. Returns how many were removed."""
        removed = 0
        for path in self.root.glob("*/.*.tmp"):
            writer = temporary_writer(path)
            if writer is None or _process_alive(writer):
                continue
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def path_for(self, collection_id: int, depth: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in depth)
        return self.root / str(collection_id) / f"{safe}.faiss"

    def get(self, collection_id: int, depth: str, dim: int) -> VectorIndex:
        key = (collection_id, depth)
        with self._lock:
            index = self._indexes.get(key)
            if index is None:
                index = self._open(collection_id, depth, dim)
                self._indexes[key] = index
            return index

    def _open(self, collection_id: int, depth: str, dim: int) -> VectorIndex:
        path = self.path_for(collection_id, depth)
        with self._sessions() as session:
            sql_ids = repository.vector_ids(session, collection_id, depth)
            exact = self._sql_source(collection_id, depth, dim)
            if not path.exists() and len(sql_ids) == 0:
                return VectorIndex(
                    dim, policy=self.policy, to_device=self._to_device, exact_source=exact
                )
            began = time.monotonic()
            try:
                index = VectorIndex.load(
                    path, dim, policy=self.policy, to_device=self._to_device, exact_source=exact
                )
                # Reading the file stands for what saving it costs, until a save measures it:
                # the first periodic save of a loaded gigabyte index is throttled too.
                self.last_saves[(collection_id, depth)] = (
                    time.monotonic(),
                    time.monotonic() - began,
                )
            except IndexFileError as exc:
                log.warning("rebuilding index from SQL: %s", exc)
                return self._rebuild(session, collection_id, depth, dim, len(sql_ids))
            self._reconcile(session, index, collection_id, depth, dim, sql_ids)
            if index.ntotal != len(sql_ids):
                log.warning("index %s disagrees with SQL after reconciling; rebuilding", path)
                return self._rebuild(session, collection_id, depth, dim, len(sql_ids))
        index.maybe_rebuild()  # the policy or the size may have changed since it was saved
        return index

    def _reconcile(
        self,
        session: Session,
        index: VectorIndex,
        collection_id: int,
        depth: str,
        dim: int,
        sql_ids: np.ndarray,
    ) -> int:
        file_ids = index.ids()
        stale = np.setdiff1d(file_ids, sql_ids, assume_unique=True)
        missing = np.setdiff1d(sql_ids, file_ids, assume_unique=True)
        if len(stale):
            index.remove(stale)
        for ids, matrix in repository.iter_vectors(session, collection_id, depth, dim, missing):
            index.add(ids, matrix)
        if len(stale) or len(missing):
            log.info(
                "reconciled index (%s, %s): +%d from SQL, -%d deleted",
                collection_id,
                depth,
                len(missing),
                len(stale),
            )
        return len(stale) + len(missing)

    def _rebuild(
        self, session: Session, collection_id: int, depth: str, dim: int, count: int
    ) -> VectorIndex:
        """Build the index the policy wants for the SQL vectors, reading them twice when
        it has to train (a sample, then everything), never all at once."""
        self.rebuilds += 1
        built = build_index(
            dim,
            lambda: repository.iter_vectors(session, collection_id, depth, dim),
            count,
            self.policy,
        )
        index = VectorIndex.from_built(
            dim, built, self.policy, self._to_device, self._sql_source(collection_id, depth, dim)
        )
        index.save(self.path_for(collection_id, depth))
        return index

    def _sql_source(self, collection_id: int, depth: str, dim: int) -> VectorSource:
        """Exact vectors from SQL, for rebuilds that cannot use the index's fp16 copies."""

        def read() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            with self._sessions() as session:
                yield from repository.iter_vectors(session, collection_id, depth, dim)

        return read

    def loaded(self, collection_id: int | None = None) -> dict[tuple[int, str], VectorIndex]:
        """The indexes opened so far ((collection, depth) -> index), of one collection or
        all. A replica applies others' changes to these; an index opened later reads SQL."""
        with self._lock:
            return {
                key: index
                for key, index in self._indexes.items()
                if collection_id is None or key[0] == collection_id
            }

    def writing(self, collection_id: int) -> threading.Lock:
        """Held by this process's writes of a collection from their COMMIT to their index
        update: under it, every write this process committed is in its indexes, or its
        writer has called commit_unknown()."""
        with self._lock:
            return self._writes.setdefault(collection_id, threading.Lock())

    def commit_unknown(self, collection_id: int) -> None:
        """A write failed at or after its COMMIT (say, the connection dropped before the
        answer): it may be in SQL without being in the indexes, and a client's retry finds
        it `unchanged`. The change-log follower skips this process's own rows, so nothing
        else would ever add it here."""
        with self._lock:
            self._unsure.add(collection_id)

    def relevel_unsure(self) -> int:
        """Bring the loaded indexes of collections marked by commit_unknown() level with
        SQL (ids only SQL has are added, ids SQL no longer has removed); returns how many
        vectors changed. A collection stays marked until this succeeds."""
        with self._lock:
            unsure, self._unsure = self._unsure, set()
        changed = 0
        try:
            while unsure:
                collection_id = next(iter(unsure))
                with self.writing(collection_id), self._sessions() as session:
                    for (_, depth), index in self.loaded(collection_id).items():
                        sql_ids = repository.vector_ids(session, collection_id, depth)
                        changed += self._reconcile(
                            session, index, collection_id, depth, index.dim, sql_ids
                        )
                unsure.discard(collection_id)
        finally:
            with self._lock:
                self._unsure |= unsure
        return changed

    def remove_items(self, collection_id: int, ids: np.ndarray) -> None:
        with self._lock:
            indexes = [ix for (cid, _), ix in self._indexes.items() if cid == collection_id]
        for index in indexes:
            index.remove(ids)

    def drop_collection(self, collection_id: int) -> None:
        with self._lock:
            for key in [k for k in self._indexes if k[0] == collection_id]:
                del self._indexes[key]
        shutil.rmtree(self.root / str(collection_id), ignore_errors=True)

    def save_dirty(self, throttled: bool = False) -> int:
        """Save every index changed since its last save; returns how many were saved.
        `throttled` (periodic saves) skips an index saved less than SAVE_DUTY times its
        last save's duration ago; shutdown saves everything."""
        with self._lock:
            items = list(self._indexes.items())
        saved = 0
        failed: OSError | None = None
        for key, index in items:
            if not index.dirty:
                continue
            if throttled and key in self.last_saves:
                at, seconds = self.last_saves[key]
                if time.monotonic() - at < SAVE_DUTY * seconds:
                    continue
            path = self.path_for(*key)
            began = time.monotonic()
            try:
                index.save(path)
            except OSError as exc:  # disk full, read-only: SQL still holds every vector
                log.error("saving %s failed (%s); it stays dirty and is retried", path, exc)
                failed = exc
                continue
            self.last_saves[key] = (time.monotonic(), time.monotonic() - began)
            saved += 1
        self.save_error = failed
        return saved

    def check_space(self) -> None:
        """Refuse new writes while index files cannot be saved for lack of space; retried
        here first, so writes resume as soon as space is freed."""
        if self.save_error is None or self.save_error.errno != errno.ENOSPC:
            return
        self.save_dirty()
        if self.save_error is not None and self.save_error.errno == errno.ENOSPC:
            raise ResourceExhausted(
                f"no space left in the data folder {self.root.parent}: index files cannot be "
                "saved, so no more images are taken for now",
                hint="free disk space there; ingest resumes by itself",
            )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
