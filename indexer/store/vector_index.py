"""The live FAISS index of one (collection, depth): ids are item ids, inner product on unit
vectors. It is a cache derived from SQL, saved and loaded through `index_files`.

Its kind follows its size (see index_policy): exact Flat while small, IVF trained on its own
vectors past a threshold, retrained as it grows. A rebuild reads a copy of the contents a
little at a time and trains off the lock; writes meanwhile are journaled (`rebuild_journal`)
and replayed onto the new index, which is then swapped in. Searches wait only for single
chunk copies and the final swap.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from faiss.contrib.inspect_tools import get_invlist

from indexer.store.faiss_device import DeviceCopier
from indexer.store.faiss_tools import (
    faiss_threads,
    index_ids,
    lower_thread_priority,
    release_freed_memory,
)
from indexer.store.index_files import Manifest, encode_index, read_index_file, write_index_file
from indexer.store.index_policy import (
    FLAT,
    IVF,
    BuildReport,
    BuiltIndex,
    IndexPolicy,
    VectorSource,
    build_index,
    new_flat,
    reserve_flat,
)
from indexer.store.rebuild_journal import Write, journal_rows, replay

log = logging.getLogger(__name__)

#: Rows copied per lock hold when a rebuild reads the live index.
SNAPSHOT_CHUNK = 5_000
#: Rows added per lock hold.
ADD_CHUNK = 1_024
#: Journaled vectors replayed under the lock at swap time; more are replayed before it.
SWAP_REPLAY_MAX = 5_000
REPLAY_ROUNDS_MAX = 8
#: FAISS GPU indexes select at most this many cells (and neighbours) per query.
GPU_MAX_NPROBE = 2048
#: After a failed rebuild, wait this long before trying again.
REBUILD_RETRY_S = 300.0


class VectorIndex:
    """Thread-safe wrapper: one writer or one searcher at a time on the FAISS object."""

    def __init__(
        self,
        dim: int,
        index: faiss.Index | None = None,
        kind: str = FLAT,
        *,
        policy: IndexPolicy | None = None,
        built: BuildReport | None = None,
        to_device: DeviceCopier | None = None,
        exact_source: VectorSource | None = None,
    ):
        self.dim = dim
        self.kind = kind
        # Any: an IndexIDMap2 or an IndexIVFScalarQuantizer, and FAISS's stubs miss most
        # of their SWIG attributes (id_map, nlist, invlists, ...).
        self._index: Any = index if index is not None else new_flat(dim)
        self.policy = policy or IndexPolicy()
        self.built = built or BuildReport(kind, int(self._index.ntotal))
        self._lock = threading.RLock()  # the FAISS object: searches, writes, swaps
        # Writers take this first. The end of a rebuild holds it alone to replay the last
        # writes onto the new index: writers wait then, searches never do.
        self._write_lock = threading.Lock()
        self.dirty = False
        # Writes since a rebuild started, replayed onto the new index; None: no rebuild.
        self._journal: list[Write] | None = None
        self._rebuilder: threading.Thread | None = None
        self._no_rebuild_before = 0.0
        self.rebuilds_done = 0
        self.history: list[BuildReport] = []  # reports of the rebuilds swapped in, in order
        # Where exact vectors can be re-read (SQL). IVF holds fp16 copies: enough to retrain
        # IVF (fp16 round-trips exactly), not for going back to an exact Flat index.
        self.exact_source = exact_source
        # The search device's copy, refreshed when `_version` moved on since it was made.
        self._to_device = to_device
        self._device_index: faiss.Index | None = None
        self._version = 0
        self._device_version = -1
        # Replicas (indexer/store/shared_builds.py): whether this process may rebuild now
        # (None: always), and who hears of a rebuild swapped in (the builder publishes it).
        self.rebuild_gate: Callable[[], bool] | None = None
        self.on_rebuilt: Callable[[VectorIndex], None] | None = None

    @classmethod
    def from_built(
        cls,
        dim: int,
        built: BuiltIndex,
        policy: IndexPolicy | None = None,
        to_device: DeviceCopier | None = None,
        exact_source: VectorSource | None = None,
    ) -> VectorIndex:
        report = built.report
        return cls(
            dim,
            built.index,
            report.kind,
            policy=policy,
            built=report,
            to_device=to_device,
            exact_source=exact_source,
        )

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def nprobe(self) -> int:
        """Cells scanned per query (0 for Flat): calibrated at each build; settable to
        trade recall for speed until the next one."""
        return int(self._index.nprobe) if self.kind == IVF else 0

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        with self._lock:
            if self.kind == IVF:
                self._index.nprobe = max(1, min(int(value), int(self._index.nlist)))
                self._changed()

    def ids(self) -> np.ndarray:
        with self._lock:
            return index_ids(self._index, self.kind)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        ids = np.asarray(ids, dtype=np.int64)
        matrix = _as_matrix(vectors, self.dim)
        # A piece per lock hold: adding to IVF assigns cells, and searches should not wait
        # for a whole bulk add.
        for start in range(0, len(ids), ADD_CHUNK):
            piece_ids, piece = ids[start : start + ADD_CHUNK], matrix[start : start + ADD_CHUNK]
            with self._write_lock, self._lock:
                self._index.add_with_ids(piece, piece_ids)
                if self._journal is not None:
                    self._journal.append(Write(piece_ids.copy(), piece.copy()))
                self._changed(mirrored=self._add_to_device(piece, piece_ids))
        self.maybe_rebuild()

    def remove(self, ids: np.ndarray) -> int:
        if len(ids) == 0:
            return 0
        ids = np.asarray(ids, dtype=np.int64)
        with self._write_lock, self._lock:
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
            if self._journal is not None:
                self._journal.append(Write(ids.copy(), None))
            if removed:
                self._changed()
        if removed:
            self.maybe_rebuild()
        return removed

    def _changed(self, mirrored: bool = False) -> None:
        """Mark a write; `mirrored`: the device copy got it too and stays current."""
        current = self._device_version == self._version
        self.dirty = True
        self._version += 1
        if mirrored and current:
            self._device_version = self._version

    def _add_to_device(self, vectors: np.ndarray, ids: np.ndarray) -> bool:
        """Adds go to a current device copy as well (FAISS GPU indexes take adds, not
        removals); anything else makes the next search copy the index again."""
        if self._device_index is None or self._device_version != self._version:
            return False
        try:
            self._device_index.add_with_ids(vectors, ids)
        except RuntimeError as exc:
            log.warning("adding to the device copy failed (%s); it will be copied again", exc)
            self._device_index = None
            return False
        return True

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query; ids of -1 mark empty slots. `allowed_ids`
        restricts the search to those items (via FAISS's id selector, on the CPU index)."""
        queries = _as_matrix(queries, self.dim)
        with self._lock:
            total = self.ntotal
            if total == 0:
                n = len(queries)
                return np.full((n, 1), -np.inf, np.float32), np.full((n, 1), -1, np.int64)
            k = max(1, min(k, total))
            selector = None
            if allowed_ids is not None:
                selector = faiss.IDSelectorBatch(np.asarray(allowed_ids, dtype=np.int64))
            params = faiss.SearchParametersIVF() if self.kind == IVF else faiss.SearchParameters()
            if selector is not None:
                params.sel = selector  # kept alive by `selector` until the search returns
            if isinstance(params, faiss.SearchParametersIVF):
                allowed = total if allowed_ids is None else len(allowed_ids)
                params.nprobe = self._nprobe_for(k, total, allowed)
            index = self._index if selector is not None else self._search_device_index()
            if index is not self._index and isinstance(params, faiss.SearchParametersIVF):
                params.nprobe = min(params.nprobe, GPU_MAX_NPROBE)
            threads = self.policy.single_query_threads if len(queries) == 1 else 0
            with faiss_threads(threads):
                if self.kind == FLAT and selector is None:
                    scores, ids = index.search(queries, k)
                else:
                    scores, ids = index.search(queries, k, params=params)
        scores[ids < 0] = -np.inf  # IVF marks empty slots with -FLT_MAX
        return scores, ids

    def _nprobe_for(self, k: int, total: int, allowed: int) -> int:
        """The calibrated nprobe, widened so the cells scanned hold as many allowed items
        as an unfiltered search sees, and at least 2k candidates on average."""
        lists = int(self._index.nlist)
        allowed = max(1, min(allowed, total))
        per_list = allowed / lists
        wanted = max(self._index.nprobe * total / allowed, 2 * k / per_list)
        return int(min(lists, math.ceil(wanted)))

    def _search_device_index(self) -> faiss.Index:
        """The index to search: a device (GPU) copy when there is one, kept current."""
        if self._to_device is None:
            return self._index
        if self._device_version != self._version:
            self._device_index = None  # free the stale copy before making the new one
            try:
                self._device_index = self._to_device(self._index)
            except RuntimeError as exc:
                log.warning("cannot copy the index to the search device (%s); using CPU", exc)
                self._to_device = None
                return self._index
            self._device_version = self._version
        assert self._device_index is not None
        return self._device_index

    def reserve(self, count: int) -> None:
        """Make room for `count` vectors before a bulk add (Flat only; IVF grows per cell)."""
        with self._write_lock, self._lock:
            if self.kind == FLAT:
                reserve_flat(self._index, count)

    # -- growth: rebuild as the kind or size the policy wants ------------------------------

    def needs_rebuild(self) -> bool:
        return self.policy.wants_rebuild(self.kind, self.ntotal, self.built.vectors)

    def maybe_rebuild(self) -> None:
        """Start a rebuild when the policy asks for one and none is running: in a background
        thread, or here when the policy says so."""
        if not self.needs_rebuild() or time.monotonic() < self._no_rebuild_before:
            return
        if self.rebuild_gate is not None and not self.rebuild_gate():
            return  # another replica builds; this one adopts its build
        if not self.policy.background:
            self.rebuild()
            return
        with self._lock:
            if self._rebuilder is not None and self._rebuilder.is_alive():
                return
            self._rebuilder = threading.Thread(
                target=self._rebuild_in_background, name="index-rebuild", daemon=True
            )
            self._rebuilder.start()

    def wait_for_rebuild(self, timeout: float | None = None) -> None:
        thread = self._rebuilder
        if thread is not None:
            thread.join(timeout)

    def _rebuild_in_background(self) -> None:
        lower_thread_priority()  # searches and ingest first; FAISS's team inherits it
        try:
            self.rebuild()
        except Exception:
            self._no_rebuild_before = time.monotonic() + REBUILD_RETRY_S
            log.exception("rebuilding a %s index of %d vectors failed", self.kind, self.ntotal)

    def rebuild(self) -> bool:
        """Build the index the policy wants for the current vectors from a copy of them, and
        swap it in. False when another rebuild is already running."""
        with self._lock:
            if self._journal is not None:
                return False
            self._journal = []
            total = self.ntotal
            kind = self.policy.kind_for(total, self.kind)
            lossy = self.kind == IVF and kind == FLAT
        source = self.exact_source if lossy and self.exact_source is not None else self._snapshot
        try:
            built = build_index(self.dim, source, total, self.policy, kind)
            self._catch_up_and_swap(built)
        except BaseException:
            with self._lock:
                self._journal = None
            raise
        release_freed_memory()  # the old index's pages (GBs at 1M vectors)
        log.info(
            "index rebuilt as %s from %d vectors (nprobe %d) in %.1fs",
            built.report.kind,
            built.report.vectors,
            built.report.nprobe,
            built.report.seconds,
        )
        if self.on_rebuilt is not None:
            self.on_rebuilt(self)
        return True

    def adopt(
        self,
        built: BuiltIndex,
        fill: Callable[[np.ndarray], Iterator[tuple[np.ndarray, np.ndarray]]],
    ) -> bool:
        """Swap in an index another process built (a replica adopting the builder's file),
        levelled with this one's contents first: ids it lacks get their vectors from
        `fill` (SQL), ids this index no longer has are removed, and writes made meanwhile
        are replayed. False when a rebuild of this index is running."""
        with self._lock:
            if self._journal is not None:
                return False
            # Under the lock that writers need: every later write lands in the journal.
            self._journal = []
            live = index_ids(self._index, self.kind)
        try:
            theirs = index_ids(built.index, built.report.kind)
            stale = np.setdiff1d(theirs, live)
            if len(stale):
                built.index.remove_ids(faiss.IDSelectorBatch(stale))
            for ids, vectors in fill(np.setdiff1d(live, theirs)):
                built.index.add_with_ids(_as_matrix(vectors, self.dim), ids)
            self._catch_up_and_swap(built)
        except BaseException:
            with self._lock:
                self._journal = None
            raise
        release_freed_memory()
        return True

    def _snapshot(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The live contents as (ids, vectors) chunks, copied a piece per lock hold. Writes
        that land meanwhile are in the journal, so the pieces need not agree in time."""
        if self.kind == FLAT:
            # A removal compacts Flat, so rows after the cursor can slip below it between
            # two holds; the swap finds and adds such rows (see _add_skipped).
            start = 0
            while True:
                with self._lock:
                    end = min(start + SNAPSHOT_CHUNK, self.ntotal)
                    if end <= start:
                        return
                    ids = faiss.rev_swig_ptr(self._index.id_map.data(), end)[start:].copy()
                    vectors = faiss.downcast_index(self._index.index).reconstruct_n(
                        start, end - start
                    )
                yield ids.astype(np.int64), vectors
                start = end
        ivf = self._index
        ids_parts: list[np.ndarray] = []
        code_parts: list[np.ndarray] = []
        rows = 0
        for list_no in range(ivf.nlist):
            with self._lock:
                if self._index is not ivf:
                    raise RuntimeError("index swapped during a snapshot")
                list_ids, codes = get_invlist(ivf.invlists, list_no)
            ids_parts.append(list_ids)
            code_parts.append(codes)
            rows += len(list_ids)
            if rows >= SNAPSHOT_CHUNK or list_no == ivf.nlist - 1:
                if rows:
                    yield np.concatenate(ids_parts), ivf.sq.decode(np.concatenate(code_parts))
                ids_parts, code_parts, rows = [], [], 0

    def _catch_up_and_swap(self, built: BuiltIndex) -> None:
        """Replay the journal onto the new index while writes go on, until little is left;
        then hold writers back, replay the rest, and swap (searches wait only for that)."""
        for _ in range(REPLAY_ROUNDS_MAX):
            with self._lock:
                pending, self._journal = self._journal or [], []
            replay(built.index, pending)
            if journal_rows(pending) <= SWAP_REPLAY_MAX:
                break
        with self._write_lock:
            with self._lock:
                pending, self._journal = self._journal or [], []
            replay(built.index, pending)
            with self._lock:
                if self.kind == FLAT:
                    self._add_skipped(built)
                self._index, self.kind, self.built = built.index, built.report.kind, built.report
                self._journal = None
                self.rebuilds_done += 1
                self.history.append(built.report)
                self._changed()

    def _add_skipped(self, built: BuiltIndex) -> None:
        """Rows of the live Flat index that its chunked snapshot missed (moved by a
        removal between two chunks) go into the new index too. Cheap: Flat stays small."""
        live_ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        new_ids = index_ids(built.index, built.report.kind)
        rows = np.flatnonzero(~np.isin(live_ids, new_ids))
        if len(rows):
            vectors = faiss.downcast_index(self._index.index).reconstruct_batch(rows)
            built.index.add_with_ids(vectors, live_ids[rows])
            log.info("rebuild: %d row(s) moved during the snapshot were added", len(rows))

    # -- persistence ---------------------------------------------------------------------

    def save(self, path: Path) -> Manifest:
        """Write the index and its manifest atomically; returns the manifest written."""
        with self._lock:
            built = replace(self.built, nprobe=self.nprobe)
            blob, manifest = encode_index(self._index, self.dim, self.ids(), built)
            self.dirty = False
        try:
            write_index_file(path, blob, manifest)
        except BaseException:
            # Not saved: stay dirty so the next periodic save (or shutdown) tries again.
            with self._lock:
                self.dirty = True
            raise
        return manifest

    @classmethod
    def load(
        cls,
        path: Path,
        dim: int,
        *,
        policy: IndexPolicy | None = None,
        to_device: DeviceCopier | None = None,
        exact_source: VectorSource | None = None,
    ) -> VectorIndex:
        """Load and verify against the manifest; IndexFileError when anything is off."""
        index, manifest = read_index_file(path, dim)
        return cls(
            dim,
            index,
            manifest.kind,
            policy=policy,
            built=manifest.built,
            to_device=to_device,
            exact_source=exact_source,
        )


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
    return matrix
