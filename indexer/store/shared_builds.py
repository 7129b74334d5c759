"""One builder among replicas: index rebuilds and retrains run once, on the replica that
holds the builder lock, and the others adopt its files from a folder they all mount.

The lock is a session-level PostgreSQL advisory lock on a connection the builder keeps
open, so it passes to another replica as soon as the builder dies; on SQLite (one machine)
an flock on a file in the shared folder does the same. Built files are written with the
same atomic save and manifest as every index file (index_files), so a reader never sees a
torn one."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, text

from indexer.store.index_files import IndexFileError, manifest_path, read_index_file
from indexer.store.index_policy import BuiltIndex

log = logging.getLogger(__name__)

#: Advisory lock key of the builder role (distinct from the migration and write-order locks).
BUILDER_LOCK_KEY = 0x5354524255494C  # "STRBUIL"
#: A replica that is not the builder tries to become it at most this often.
RETRY_S = 5.0


class BuilderElection:
    """`is_builder()`: whether this process holds the builder role (cheap to call often)."""

    def __init__(self, engine: Engine, shared_dir: Path):
        self._engine = engine
        self._lock_file_path = shared_dir / ".builder.lock"
        self._connection: Any = None
        self._file: IO[bytes] | None = None
        self._next_try = 0.0
        self._mutex = threading.Lock()

    def is_builder(self) -> bool:
        with self._mutex:
            if self._holding():
                return True
            now = time.monotonic()
            if now < self._next_try:
                return False
            self._next_try = now + RETRY_S
            won = self._try_acquire()
            if won:
                log.info("this replica is the index builder (rebuilds run here, others adopt)")
            return won

    def _holding(self) -> bool:
        if self._file is not None:
            return True
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
            return True
        except Exception:
            log.warning("lost the builder lock's connection; another replica may build now")
            self._close_connection()
            return False

    def _try_acquire(self) -> bool:
        if self._engine.dialect.name == "postgresql":
            connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                won = bool(
                    connection.scalar(
                        text("SELECT pg_try_advisory_lock(:key)"), {"key": BUILDER_LOCK_KEY}
                    )
                )
            except Exception:
                connection.close()
                raise
            if won:
                self._connection = connection
            else:
                connection.close()
            return won
        self._lock_file_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self._lock_file_path, "ab")  # noqa: SIM115 - held while builder
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def _close_connection(self) -> None:
        with contextlib.suppress(Exception):
            self._connection.close()
        self._connection = None

    def close(self) -> None:
        with self._mutex:
            if self._connection is not None:
                self._close_connection()
            if self._file is not None:
                self._file.close()  # releases the flock
                self._file = None


class SharedBuilds:
    """The shared folder of built index files: <root>/<collection id>/<depth>.faiss."""

    def __init__(self, root: Path):
        self.root = root

    def path_for(self, collection_id: int, depth: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in depth)
        return self.root / str(collection_id) / f"{safe}.faiss"

    def stamp(self, collection_id: int, depth: str) -> float:
        """When the build on file was published (0: none)."""
        try:
            return manifest_path(self.path_for(collection_id, depth)).stat().st_mtime
        except OSError:
            return 0.0

    def read(self, collection_id: int, depth: str, dim: int) -> BuiltIndex | None:
        path = self.path_for(collection_id, depth)
        try:
            index, manifest = read_index_file(path, dim)
        except (IndexFileError, OSError) as exc:
            log.warning("shared build %s unreadable (%s); waiting for the next one", path, exc)
            return None
        return BuiltIndex(index, manifest.built)

    def drop(self, collection_id: int) -> None:
        folder = self.root / str(collection_id)
        for path in folder.glob("*"):
            with contextlib.suppress(OSError):
                path.unlink()
        with contextlib.suppress(OSError):
            os.rmdir(folder)
