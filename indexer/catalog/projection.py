"""2-D projections of one depth's stored vectors, for maps of a collection: PCA (default),
UMAP or t-SNE where installed. Computed server-side, cached in SQL per (collection, depth,
method) with the collection's version, recomputed once items were added or deleted since.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import PCA  # imported once here, not inside the timed fit
from sqlalchemy.exc import IntegrityError

from indexer.catalog.collections import get_collection
from indexer.catalog.context import Context
from indexer.core.errors import FailedPrecondition, InvalidInput, quote
from indexer.core.vocabulary import DEFAULT_PROJECTION_METHOD, PROJECTION_METHODS
from indexer.store import browse_repository, repository
from indexer.store.browse_repository import StoredProjection

log = logging.getLogger(__name__)

#: t-SNE is quadratic-ish in time and memory on one machine; past this many points it is
#: refused with a pointer to PCA or UMAP rather than left running for many minutes.
TSNE_MAX_POINTS = 20_000
SEED = 0


@dataclass(frozen=True)
class ProjectionResult:
    collection: str
    depth: str
    method: str
    ids: np.ndarray  # int64 (n,), ascending
    xy: np.ndarray  # float32 (n, 2), in [-1, 1]
    cached: bool
    seconds: float  # compute time, 0 when cached
    version: int


# One computation per (collection id, depth, method) at a time in this process: a map page
# opened twice does not start two runs.
_locks: dict[tuple[int, str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(key: tuple[int, str, str]) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def get_projection(
    ctx: Context, collection_name: str, depth: str = "", method: str = ""
) -> ProjectionResult:
    method = method or DEFAULT_PROJECTION_METHOD
    if method not in PROJECTION_METHODS:
        raise InvalidInput(
            f"projection method {quote(method)} is not known",
            hint=f"use one of: {', '.join(PROJECTION_METHODS)}",
        )
    collection = get_collection(ctx, collection_name)
    spec = collection.depth(depth) if depth else collection.depths[-1]  # deepest by default
    key = (collection.id, spec.name, method)
    with _lock(key):
        with ctx.sessions() as session:
            version = repository.collection_version(session, collection.id)
            stored = browse_repository.get_projection(session, *key)
        if stored is not None and stored.version == version:
            return ProjectionResult(
                collection.name, spec.name, method, stored.ids, stored.xy, True, 0.0, version
            )
        # The version is read before the vectors: a change landing in between makes the
        # cache look stale at the next call (one extra computation), never fresh when stale.
        with ctx.sessions() as session:
            chunks = list(repository.iter_vectors(session, collection.id, spec.name, spec.dim))
        ids = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int64)
        vectors = (
            np.concatenate([c[1] for c in chunks])
            if chunks
            else np.zeros((0, spec.dim), np.float32)
        )
        started = time.perf_counter()
        xy = project(vectors, method)
        seconds = time.perf_counter() - started
        log.info(
            "projected %d vectors of %s/%s with %s in %.2f s",
            len(ids),
            collection.name,
            spec.name,
            method,
            seconds,
        )
        try:
            with ctx.sessions.begin() as session:
                browse_repository.put_projection(
                    session, *key, StoredProjection(version, ids, xy, seconds)
                )
        except IntegrityError:
            # Another server process cached this projection at the same moment; either
            # copy serves, and the answer here is complete without ours.
            log.info(
                "projection of %s/%s cached concurrently elsewhere", collection.name, spec.name
            )
    return ProjectionResult(collection.name, spec.name, method, ids, xy, False, seconds, version)


def project(vectors: np.ndarray, method: str = DEFAULT_PROJECTION_METHOD) -> np.ndarray:
    """(n, d) -> (n, 2) float32 scaled into [-1, 1] with the aspect kept (both axes by the
    same factor, centred), so distances on the map compare across its axes."""
    n = len(vectors)
    if n < 3:  # nothing to fit: a point at the centre, or two on the x axis
        xy = np.zeros((n, 2), np.float32)
        if n == 2:
            xy[:, 0] = (-1.0, 1.0)
        return xy
    data = np.asarray(vectors, dtype=np.float32)
    if method == "pca":
        # Randomized SVD (sklearn's choice at this shape); 3 power iterations instead of its
        # 7 give the same two components (cosine 1.0000 on 10k x 1,280 embedding-like
        # vectors) in about half the time.
        points = PCA(
            n_components=2, svd_solver="randomized", iterated_power=3, random_state=SEED
        ).fit_transform(data)
    elif method == "umap":
        points = _umap(data)
    else:
        points = _tsne(data)
    return _scale(np.asarray(points, dtype=np.float64))


def _umap(data: np.ndarray) -> np.ndarray:
    try:
        import umap  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise FailedPrecondition(
            "UMAP projections need the umap-learn package, which this server lacks",
            hint="pip install umap-learn on the server, or ask for method 'pca'",
        ) from None
    reducer = umap.UMAP(n_components=2, random_state=SEED, metric="cosine")
    return np.asarray(reducer.fit_transform(data))


def _tsne(data: np.ndarray) -> np.ndarray:
    if len(data) > TSNE_MAX_POINTS:
        raise FailedPrecondition(
            f"t-SNE of {len(data):,} points would take too long (at most {TSNE_MAX_POINTS:,})",
            hint="ask for method 'pca' (or 'umap' where installed) for large collections",
        )
    from sklearn.manifold import TSNE

    # Reduce to 50 dimensions first, as the t-SNE authors advise: faster, less noise.
    reduced = PCA(n_components=min(50, data.shape[1], len(data)), random_state=SEED).fit_transform(
        data
    )
    perplexity = min(30.0, (len(data) - 1) / 3.0)
    return np.asarray(
        TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=SEED).fit_transform(
            reduced
        )
    )


def _scale(points: np.ndarray) -> np.ndarray:
    low, high = points.min(axis=0), points.max(axis=0)
    half = float((high - low).max()) / 2.0
    centred = points - (low + high) / 2.0
    if half <= 0.0:
        return np.zeros(points.shape, np.float32)
    return np.clip(centred / half, -1.0, 1.0).astype(np.float32)
