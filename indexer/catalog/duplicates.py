"""Near-duplicate groups: items whose vectors at one depth are at least `threshold` cosine
apart, joined transitively (union-find over the pairs the FAISS index finds)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.catalog.collections import get_collection
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput
from indexer.core.vocabulary import DEFAULT_DUPLICATE_THRESHOLD
from indexer.store import label_repository, repository
from indexer.store.vector_index import VectorIndex

FIRST_K = 16
CHUNK = 2048


@dataclass(frozen=True)
class Member:
    id: int
    uri: str


@dataclass(frozen=True)
class DuplicatesResult:
    depth: str
    threshold: float
    groups: list[list[Member]]  # largest first; members by id


def find_duplicates(
    ctx: Context,
    collection_name: str,
    depth: str = "",
    threshold: float = DEFAULT_DUPLICATE_THRESHOLD,
) -> DuplicatesResult:
    """Groups of near-duplicates at `depth` (default: the collection's deepest)."""
    if not 0.0 < threshold <= 1.0:
        raise InvalidInput(f"threshold {threshold} is out of range", hint="use a cosine in (0, 1]")
    collection = get_collection(ctx, collection_name)
    spec = collection.depth(depth) if depth else collection.depths[-1]
    index = ctx.indexes.get(collection.id, spec.name, spec.dim)
    parent: dict[int, int] = {}
    with ctx.sessions() as session:
        # Only ids SQL still has: FAISS may briefly hold deleted ones, never to be served.
        alive = set(repository.vector_ids(session, collection.id, spec.name).tolist())
        for ids, matrix in repository.iter_vectors(session, collection.id, spec.name, spec.dim):
            _join(index, ids, matrix, threshold, alive, parent)
    groups: dict[int, list[int]] = {}
    for item_id in list(parent):
        groups.setdefault(_root(parent, item_id), []).append(item_id)
    found = sorted(
        (sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0])
    )
    with ctx.sessions() as session:
        uris = label_repository.item_uris(session, collection.id, [i for g in found for i in g])
    return DuplicatesResult(
        spec.name, threshold, [[Member(i, uris.get(i, "")) for i in g] for g in found]
    )


def _join(
    index: VectorIndex,
    ids: np.ndarray,
    matrix: np.ndarray,
    threshold: float,
    alive: set[int],
    parent: dict[int, int],
) -> None:
    """Union every pair (query, neighbour) at or above the threshold. k doubles for the
    queries whose k-th neighbour still passes, so dense clusters are followed fully."""
    for start in range(0, len(ids), CHUNK):
        queries, query_ids = matrix[start : start + CHUNK], ids[start : start + CHUNK]
        k = FIRST_K
        while len(queries):
            scores, found = index.search(queries, k)
            for row, query_id in enumerate(query_ids.tolist()):
                for other in found[row][(scores[row] >= threshold) & (found[row] >= 0)].tolist():
                    if other != query_id and other in alive:
                        _union(parent, query_id, other)
            full = (scores[:, -1] >= threshold) & (found.shape[1] == k) & (k < index.ntotal)
            queries, query_ids, k = queries[full], query_ids[full], k * 2


def _root(parent: dict[int, int], item: int) -> int:
    parent.setdefault(item, item)
    while parent[item] != item:
        parent[item] = parent[parent[item]]  # path halving
        item = parent[item]
    return item


def _union(parent: dict[int, int], a: int, b: int) -> None:
    ra, rb = _root(parent, a), _root(parent, b)
    if ra != rb:
        parent[max(ra, rb)] = min(ra, rb)
