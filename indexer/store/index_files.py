"""FAISS index files and their manifests: written atomically, verified on load.

A file is written to a temporary name, fsynced, renamed over the old one, and the directory
fsynced; next to it a manifest holds the vector count, the highest item id, a checksum and
the build report, so a torn or corrupt file is detected on load and never served.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from indexer.store.index_policy import FLAT, KINDS, BuildReport

#: 3: the build report is embedded whole (2 spelled its fields out; still readable).
MANIFEST_VERSION = 3


class IndexFileError(Exception):
    """An index file or its manifest is missing, torn or corrupt; rebuild from SQL."""


@dataclass(frozen=True)
class Manifest:
    version: int
    dim: int
    vectors: int
    max_item_id: int
    checksum: str
    #: How the index was last built: kind, vectors trained on, lists, nprobe, recall.
    built: BuildReport

    @property
    def kind(self) -> str:
        return self.built.kind

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if "built" in data:
            return cls(**{**data, "built": BuildReport(**data["built"])})
        # Version 1-2: the report's fields at the top level, under other names.
        built = BuildReport(
            data["kind"],
            data.get("trained_vectors") or data["vectors"],
            data.get("lists", 0),
            data.get("nprobe", 0),
            data.get("calibrated_recall", 1.0),
        )
        return cls(
            data["version"], data["dim"], data["vectors"], data["max_item_id"],
            data["checksum"], built,
        )  # fmt: skip


def manifest_path(index_path: Path) -> Path:
    return index_path.with_suffix(index_path.suffix + ".manifest.json")


def encode_index(
    index: faiss.Index, dim: int, ids: np.ndarray, built: BuildReport
) -> tuple[bytes, Manifest]:
    """The file's bytes and manifest (under the index's lock; the write need not be)."""
    blob = faiss.serialize_index(index).tobytes()
    manifest = Manifest(
        version=MANIFEST_VERSION,
        dim=dim,
        vectors=int(index.ntotal),
        max_item_id=int(ids.max()) if len(ids) else 0,
        checksum=hashlib.sha256(blob).hexdigest(),
        built=built,
    )
    return blob, manifest


def write_index_file(path: Path, blob: bytes, manifest: Manifest) -> None:
    atomic_write(path, blob)
    atomic_write(manifest_path(path), json.dumps(asdict(manifest)).encode())


def read_index_file(path: Path, dim: int) -> tuple[faiss.Index, Manifest]:
    """Load and verify against the manifest; IndexFileError when anything is off."""
    try:
        manifest = Manifest.from_json(json.loads(manifest_path(path).read_bytes()))
        blob = path.read_bytes()
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise IndexFileError(f"{path}: unreadable index or manifest ({exc})") from exc
    if hashlib.sha256(blob).hexdigest() != manifest.checksum:
        raise IndexFileError(f"{path}: checksum does not match its manifest")
    if manifest.dim != dim:
        raise IndexFileError(f"{path}: dim {manifest.dim}, expected {dim}")
    if manifest.kind not in KINDS:
        raise IndexFileError(f"{path}: unknown index kind {manifest.kind!r}")
    try:
        index = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
    except RuntimeError as exc:
        raise IndexFileError(f"{path}: FAISS cannot read it ({exc})") from exc
    expected_type = faiss.IndexIDMap2 if manifest.kind == FLAT else faiss.IndexIVFScalarQuantizer
    if not isinstance(index, expected_type):
        raise IndexFileError(f"{path}: holds a {type(index).__name__}, not {manifest.kind}")
    if index.ntotal != manifest.vectors or index.d != dim:
        raise IndexFileError(
            f"{path}: holds {index.ntotal} vectors, manifest says {manifest.vectors}"
        )
    return index, manifest


def temporary_path(path: Path) -> Path:
    """Where a save of `path` is written before it replaces it: hidden, and named after the
    writing process and thread so concurrent saves never share a file."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def temporary_writer(tmp: Path) -> int | None:
    """The pid of the process that wrote a `temporary_path` file; None if not one."""
    parts = tmp.name.split(".")
    if not tmp.name.startswith(".") or len(parts) < 5 or parts[-1] != "tmp":
        return None
    return int(parts[-3]) if parts[-3].isdigit() else None


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
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
