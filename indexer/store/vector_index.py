"""A FAISS index for one (collection, depth): ids are item ids, inner product on unit vectors.

The index is a cache derived from SQL. Files are written atomically (temp file, fsync,
rename, fsync of the directory) next to a manifest holding the vector count, the highest
item id and a checksum, so a torn or corrupt file is detected on load and never served.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1


class IndexFileError(Exception):
    """An index file or its manifest is missing, torn or corrupt; rebuild from SQL."""


@dataclass(frozen=True)
class Manifest:
    version: int
    dim: int
    vectors: int
    max_item_id: int
    checksum: str
    kind: str


class VectorIndex:
    """Thread-safe wrapper: one writer or one searcher at a time on the FAISS object."""

    def __init__(self, dim: int, index: faiss.Index | None = None, kind: str = "flat"):
        self.dim = dim
        self.kind = kind
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._lock = threading.RLock()
        self.dirty = False

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def ids(self) -> np.ndarray:
        with self._lock:
            return faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        with self._lock:
            self._index.add_with_ids(_as_matrix(vectors, self.dim), ids.astype(np.int64))
            self.dirty = True

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        with self._lock:
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids.astype(np.int64))))
            self.dirty = self.dirty or removed > 0
            return removed

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; ids of -1 mark empty slots. `allowed_ids`
        restricts the search to those items (exact, via FAISS's id selector)."""
        queries = _as_matrix(queries, self.dim)
        with self._lock:
            k = max(1, min(k, self.ntotal)) if self.ntotal else 1
            if self.ntotal == 0:
                n = len(queries)
                return np.full((n, 1), -np.inf, np.float32), np.full((n, 1), -1, np.int64)
            if allowed_ids is None:
                scores, ids = self._index.search(queries, k)
            else:
                selector = faiss.IDSelectorBatch(allowed_ids.astype(np.int64))
                params = faiss.SearchParameters(sel=selector)
                scores, ids = self._index.search(queries, k, params=params)
        return scores, ids

    # -- persistence ---------------------------------------------------------------------

    def save(self, path: Path) -> Manifest:
        """Write the index and its manifest atomically; returns the manifest written."""
        with self._lock:
            blob = faiss.serialize_index(self._index).tobytes()
            ids = faiss.vector_to_array(self._index.id_map)
            manifest = Manifest(
                version=MANIFEST_VERSION,
                dim=self.dim,
                vectors=self.ntotal,
                max_item_id=int(ids.max()) if len(ids) else 0,
                checksum=hashlib.sha256(blob).hexdigest(),
                kind=self.kind,
            )
            self.dirty = False
        _atomic_write(path, blob)
        _atomic_write(manifest_path(path), json.dumps(asdict(manifest)).encode())
        return manifest

    @classmethod
    def load(cls, path: Path, dim: int) -> VectorIndex:
        """Load and verify against the manifest; IndexFileError when anything is off."""
        try:
            manifest = Manifest(**json.loads(manifest_path(path).read_bytes()))
            blob = path.read_bytes()
        except (OSError, ValueError, TypeError) as exc:
            raise IndexFileError(f"{path}: unreadable index or manifest ({exc})") from exc
        if hashlib.sha256(blob).hexdigest() != manifest.checksum:
            raise IndexFileError(f"{path}: checksum does not match its manifest")
        if manifest.dim != dim:
            raise IndexFileError(f"{path}: dim {manifest.dim}, expected {dim}")
        try:
            index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
        except RuntimeError as exc:
            raise IndexFileError(f"{path}: FAISS cannot read it ({exc})") from exc
        if index.ntotal != manifest.vectors or index.d != dim:
            raise IndexFileError(
                f"{path}: holds {index.ntotal} vectors, manifest says {manifest.vectors}"
            )
        return cls(dim, index, manifest.kind)


def manifest_path(index_path: Path) -> Path:
    return index_path.with_suffix(index_path.suffix + ".manifest.json")


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
    return matrix


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
