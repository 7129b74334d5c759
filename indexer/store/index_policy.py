"""Which FAISS index a collection's vectors get at their count, and how to build one.

Up to `flat_max_vectors`: exact search, an IndexIDMap2 over IndexFlatIP. Nothing to train,
and scanning that many vectors takes a few milliseconds.

Past it: IVF with fp16 codes, trained on the collection's own vectors.
- IVF (k-means cells, `nprobe` of them scanned per query) keeps ids = item ids and can
  remove vectors, which HNSW cannot.
- fp16 codes halve the memory of float32 (1M x 1,280 dims: 2.6 GB) at no visible cost in
  recall. Decoding and re-encoding them is exact, so an index can be retrained from its
  own contents without going back to SQL.
- The coarse quantizer is flat, with about sqrt(n) cells: at these sizes it is cheaper
  than the cell scan, exact, and copies to a GPU as it is (an HNSW quantizer pays off only
  with far more cells).

After each training, `nprobe` is calibrated: the smallest that reaches the target
recall@k against exact search, measured leave-one-out on a sample of the collection's own
vectors. A stored vector stands in for a future query drawn from the same distribution.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from indexer.core.settings import Settings, SettingsError
from indexer.core.vocabulary import (
    INDEX_FLAT_MAX_VECTORS,
    INDEX_RETRAIN_GROWTH,
    INDEX_TARGET_RECALL,
)

log = logging.getLogger(__name__)

FLAT = "flat"
IVF = "ivf-fp16"
KINDS = (FLAT, IVF)

#: Below this many training points per cell k-means gives poor cells (FAISS warns at 39).
MIN_TRAIN_PER_LIST = 39

#: A re-iterable source of (ids, vectors) chunks: each call starts a fresh pass.
VectorSource = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class IndexPolicy:
    #: Exact Flat up to this many vectors, IVF above.
    flat_max_vectors: int = INDEX_FLAT_MAX_VECTORS
    #: Retrain an IVF index once it holds this factor more vectors than it was trained on.
    retrain_growth: float = INDEX_RETRAIN_GROWTH
    #: recall@recall_k against exact search that nprobe is calibrated to reach...
    target_recall: float = INDEX_TARGET_RECALL
    #: ...plus this margin, for the error of estimating recall on a sample.
    recall_margin: float = 0.02
    recall_k: int = 10
    #: IVF cells: this times sqrt(n), rounded to a power of two.
    lists_per_sqrt: float = 1.0
    train_per_list: int = 40
    kmeans_iterations: int = 10
    calibration_queries: int = 256
    seed: int = 20240611
    #: Rebuild in a background thread (searches and writes go on); False: in the caller's.
    background: bool = True
    #: FAISS threads for a one-query search (the dynamic batcher sends larger batches when
    #: busy): splitting one query's scan costs more than it gains on a shared 2-core
    #: machine (bench/search.py measures both). 0 keeps FAISS's default.
    single_query_threads: int = 1

    def __post_init__(self) -> None:
        if self.flat_max_vectors < 1:
            raise SettingsError("index_flat_max_vectors must be at least 1")
        if self.retrain_growth <= 1.0:
            raise SettingsError(
                f"index_retrain_growth must be above 1, got {self.retrain_growth}",
                hint="2.0 retrains each time the collection doubles",
            )
        if not 0.0 < self.target_recall <= 1.0:
            raise SettingsError(f"index_target_recall must be in (0, 1], got {self.target_recall}")
        if self.train_per_list < MIN_TRAIN_PER_LIST:
            raise SettingsError(f"train_per_list must be at least {MIN_TRAIN_PER_LIST}")
        if min(self.recall_k, self.kmeans_iterations, self.calibration_queries) < 1:
            raise SettingsError("recall_k, kmeans_iterations and calibration_queries must be >= 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> IndexPolicy:
        return cls(
            flat_max_vectors=settings.index_flat_max_vectors,
            retrain_growth=settings.index_retrain_growth,
            target_recall=settings.index_target_recall,
        )

    def kind_for(self, count: int, current: str = FLAT) -> str:
        """The kind `count` vectors should have. An IVF index goes back to Flat only below
        half the threshold, so a collection hovering around it is not rebuilt each time."""
        if current == IVF and count > self.flat_max_vectors // 2:
            return IVF
        return IVF if count > self.flat_max_vectors else FLAT

    def lists_for(self, count: int) -> int:
        target = max(1.0, self.lists_per_sqrt * math.sqrt(max(count, 1)))
        return int(2 ** round(math.log2(target)))

    def wants_rebuild(self, kind: str, count: int, trained_on: int) -> bool:
        if self.kind_for(count, kind) != kind:
            return True
        return kind == IVF and count >= self.retrain_growth * max(trained_on, 1)


@dataclass(frozen=True)
class BuildReport:
    kind: str
    #: Vectors the index was trained on (and built from; later writes are replayed on top).
    vectors: int
    lists: int = 0
    nprobe: int = 0
    #: Leave-one-out recall@k at `nprobe` against exact search (1.0 for Flat).
    recall: float = 1.0
    seconds: float = 0.0


@dataclass
class BuiltIndex:
    index: faiss.Index
    report: BuildReport


def new_flat(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def reserve_flat(index: Any, count: int) -> None:
    """Size a Flat index's storage for `count` vectors before a bulk add: grown by doubling
    instead, it briefly holds the old and the new copy (3x the data at the last step)."""
    inner: Any = faiss.downcast_index(index.index)  # an IndexFlatIP; stubs lack `codes`
    size = inner.codes.size()
    if count * inner.code_size > size:
        inner.codes.resize(count * inner.code_size)  # allocates the capacity...
        inner.codes.resize(size)  # ...which later adds fill without reallocating


def build_index(
    dim: int,
    source: VectorSource,
    total: int,
    policy: IndexPolicy,
    kind: str | None = None,
) -> BuiltIndex:
    """Build the index `policy` wants for `total` vectors (or `kind`) from `source`, which
    is read twice for IVF: once to sample training vectors, once to add everything."""
    started = time.perf_counter()
    kind = kind or policy.kind_for(total)
    if kind == IVF:
        built = _build_ivf(dim, source, total, policy)
        if built is not None:
            log.info(
                "built %s index: %d vectors, %d lists, nprobe %d (recall@%d %.3f) in %.1fs",
                IVF,
                built.index.ntotal,
                built.report.lists,
                built.report.nprobe,
                policy.recall_k,
                built.report.recall,
                time.perf_counter() - started,
            )
            return _timed(built, started)
    index = new_flat(dim)
    reserve_flat(index, total)
    for ids, vectors in source():
        index.add_with_ids(_matrix(vectors, dim), np.asarray(ids, dtype=np.int64))
    return _timed(BuiltIndex(index, BuildReport(FLAT, int(index.ntotal))), started)


def _timed(built: BuiltIndex, started: float) -> BuiltIndex:
    built.report = dataclasses.replace(built.report, seconds=time.perf_counter() - started)
    return built


def _build_ivf(
    dim: int, source: VectorSource, total: int, policy: IndexPolicy
) -> BuiltIndex | None:
    rng = np.random.default_rng(policy.seed)
    lists = policy.lists_for(total)
    wanted = lists * policy.train_per_list + policy.calibration_queries
    sample_ids, sample = _sample(source, total, wanted, rng, dim)
    # Calibration queries stay out of training: centroids fitted to them would flatter recall.
    queries = min(policy.calibration_queries, len(sample) // 10)
    query_ids, query_vectors = sample_ids[:queries], sample[:queries]
    train = sample[queries:]
    lists = min(lists, len(train) // MIN_TRAIN_PER_LIST)
    if lists < 2:
        return None  # too few vectors to train on: Flat it is
    index = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dim),
        dim,
        lists,
        faiss.ScalarQuantizer.QT_fp16,
        faiss.METRIC_INNER_PRODUCT,
        False,  # fp16 keeps the vectors themselves, not residuals: decoding is exact
    )
    index.cp.niter = policy.kmeans_iterations
    index.cp.seed = policy.seed
    index.cp.spherical = True  # unit vectors, inner product: keep centroids on the sphere
    index.cp.max_points_per_centroid = policy.train_per_list + 1  # we sampled already
    index.train(train)

    exact = _TopK(query_vectors, policy.recall_k + 1)
    for ids, vectors in source():
        ids = np.asarray(ids, dtype=np.int64)
        matrix = _matrix(vectors, dim)
        index.add_with_ids(matrix, ids)
        exact.push(matrix, ids)
    nprobe, recall = calibrate_nprobe(
        index,
        query_vectors,
        query_ids,
        exact.ids,
        policy.recall_k,
        min(1.0, policy.target_recall + policy.recall_margin),
    )
    index.nprobe = nprobe
    return BuiltIndex(index, BuildReport(IVF, total, lists, nprobe, recall))


def _sample(
    source: VectorSource, total: int, count: int, rng: np.random.Generator, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """A uniform sample of `count` of the first `total` vectors, in one pass."""
    count = min(count, total)
    chosen = np.sort(rng.choice(total, size=count, replace=False)) if count else np.zeros(0, int)
    got_ids, got = [np.zeros(0, np.int64)], [np.zeros((0, dim), np.float32)]
    offset = 0
    for ids, vectors in source():
        lo, hi = np.searchsorted(chosen, [offset, offset + len(ids)])
        if hi > lo:
            rows = chosen[lo:hi] - offset
            got_ids.append(np.asarray(ids, dtype=np.int64)[rows])
            got.append(_matrix(vectors, dim)[rows])
        offset += len(ids)
    # Shuffled, so the first rows (calibration queries) are a uniform sample too.
    order = rng.permutation(sum(len(i) for i in got_ids))
    return np.concatenate(got_ids)[order], np.ascontiguousarray(np.concatenate(got)[order])


class _TopK:
    """Exact top-k inner products of fixed queries over vectors seen chunk by chunk."""

    def __init__(self, queries: np.ndarray, k: int):
        self.queries = queries
        self.k = k
        self.scores = np.full((len(queries), k), -np.inf, np.float32)
        self.ids = np.full((len(queries), k), -1, np.int64)

    def push(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        if len(self.queries) == 0 or len(ids) == 0:
            return
        scores = np.concatenate([self.scores, self.queries @ vectors.T], axis=1)
        all_ids = np.concatenate([self.ids, np.broadcast_to(ids, (len(self.queries), len(ids)))], 1)
        keep = min(self.k, scores.shape[1])
        top = np.argpartition(-scores, keep - 1, axis=1)[:, :keep]
        self.scores = np.take_along_axis(scores, top, axis=1)
        self.ids = np.take_along_axis(all_ids, top, axis=1)


def nprobe_candidates(lists: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, 16, ... up to `lists` (steps of about 1.4x)."""
    out: list[int] = []
    power = 1
    while power < lists:
        out.extend(p for p in (power, power + power // 2) if p < lists and p not in out)
        power *= 2
    return [*out, lists]


def calibrate_nprobe(
    index: faiss.IndexIVF,
    queries: np.ndarray,
    query_ids: np.ndarray,
    exact_ids: np.ndarray,
    k: int,
    target: float,
) -> tuple[int, float]:
    """The smallest nprobe whose leave-one-out recall@k reaches `target`, and that recall."""
    recall = 0.0
    for nprobe in nprobe_candidates(index.nlist):
        params = faiss.SearchParametersIVF()
        params.nprobe = nprobe
        _, found = index.search(queries, k + 1, params=params)
        recall = leave_one_out_recall(found, exact_ids, query_ids, k)
        if recall >= target:
            return nprobe, recall
    return index.nlist, recall


def leave_one_out_recall(
    found: np.ndarray, exact: np.ndarray, query_ids: np.ndarray, k: int
) -> float:
    """recall@k of `found` against `exact`, each row without the query's own id."""
    hits = wanted = 0
    for row, own in enumerate(query_ids):
        truth = [i for i in exact[row] if i >= 0 and i != own][:k]
        got = [i for i in found[row] if i >= 0 and i != own][:k]
        hits += len(set(got).intersection(truth))
        wanted += len(truth)
    return hits / wanted if wanted else 1.0


def _matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, dim)
