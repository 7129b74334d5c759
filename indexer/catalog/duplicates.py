"""Near-duplicate groups at one depth: stars around the best-connected items.

Two items are neighbours when their cosine at the depth is at least `threshold`. Items are
taken as centres in order of how many neighbours they have (ties: the higher mean cosine to
them, then the lower id); a centre's group is itself and its neighbours that no earlier group
holds. An item left in no group but with neighbours (all of them grouped by then) joins the
group of its closest one. So every item with a neighbour is in a group, as with union-find
over all pairs, but a group reaches at most two neighbour steps from its centre: look-alikes,
each a little like the next, no longer chain unrelated images together. (At edges, where
unrelated CIFAR photos score 0.86 to 0.99, union-find at 0.9 put 131 of 132 images in one
group.)

The default threshold depends on the depth (bench/duplicates.py measures it): the measured
cosine of DEFAULT_DUPLICATE_THRESHOLDS for the presets of the default backbone and pooling,
otherwise one calibrated on the collection's own vectors (`calibrated_threshold`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from indexer.catalog.collections import CollectionInfo, get_collection
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput
from indexer.core.vocabulary import (
    DEFAULT_BACKBONE,
    DEFAULT_DUPLICATE_THRESHOLDS,
    DEFAULT_POOLING,
    DUPLICATE_TAIL,
)
from indexer.store import label_repository, repository
from indexer.store.repository import DepthSpec
from indexer.store.vector_index import VectorIndex

FIRST_K = 16
CHUNK = 2048
#: Neighbours kept per item, the closest: this bounds memory (and what a centre takes) when
#: a threshold far too low makes every item a neighbour of every other.
MAX_NEIGHBOURS = 1024
#: Items whose random pairs calibrate a default threshold: 2,000 give 2 million pairs.
CALIBRATION_SAMPLE = 2000
#: The highest calibrated threshold: copies that decode to the same pixels score 1.0 but may
#: come back from FAISS as 0.99999994, and must still be found.
CALIBRATED_MAX = 0.9999
#: The calibration's fit: quantiles of random pairs' cosines, low enough that near-duplicate
#: pairs (a small share of all pairs in any collection of a few hundred items) barely move them.
_FIT_QUANTILES = (0.9, 0.99)


@dataclass(frozen=True)
class Member:
    id: int
    uri: str


@dataclass(frozen=True)
class Neighbours:
    ids: np.ndarray  # the other live items at or above the threshold, best first
    mean: float  # their mean cosine to this item


@dataclass(frozen=True)
class DuplicatesResult:
    depth: str
    threshold: float  # the cosine used: the one asked for, or the depth's default
    groups: list[list[Member]]  # largest first; members by id


def find_duplicates(
    ctx: Context,
    collection_name: str,
    depth: str = "",
    threshold: float | None = None,
) -> DuplicatesResult:
    """Groups of near-duplicates at `depth` (default: the collection's deepest), as the
    module's docstring says, at cosine `threshold` (default: the depth's, see above)."""
    if threshold is not None and not 0.0 < threshold <= 1.0:  # NaN too
        raise InvalidInput(f"threshold {threshold} is out of range", hint="use a cosine in (0, 1]")
    collection = get_collection(ctx, collection_name)
    spec = collection.depth(depth) if depth else collection.depths[-1]
    index = ctx.indexes.get(collection.id, spec.name, spec.dim)
    neighbours: dict[int, Neighbours] = {}
    with ctx.sessions() as session:
        # Only ids SQL still has: FAISS may briefly hold deleted ones, never to be served.
        ids = repository.vector_ids(session, collection.id, spec.name)
        if threshold is None:
            threshold = measured_threshold(collection, spec)
            if threshold is None:
                sample = _sample_ids(ids)
                chunks = repository.iter_vectors(
                    session, collection.id, spec.name, spec.dim, only_ids=sample
                )
                vectors = [matrix for _, matrix in chunks]
                threshold = calibrated_threshold(
                    np.concatenate(vectors) if vectors else np.zeros((0, spec.dim)), len(ids)
                )
        alive = set(ids.tolist())
        for chunk_ids, matrix in repository.iter_vectors(
            session, collection.id, spec.name, spec.dim
        ):
            _neighbours(index, chunk_ids, matrix, threshold, alive, neighbours)
    found = _stars(neighbours)
    with ctx.sessions() as session:
        uris = label_repository.item_uris(session, collection.id, [i for g in found for i in g])
    return DuplicatesResult(
        spec.name, threshold, [[Member(i, uris.get(i, "")) for i in g] for g in found]
    )


def measured_threshold(collection: CollectionInfo, spec: DepthSpec) -> float | None:
    """The measured default at this depth, if there is one: presets of the default backbone
    with the default pooling."""
    if collection.backbone != DEFAULT_BACKBONE or collection.pooling != DEFAULT_POOLING:
        return None
    return DEFAULT_DUPLICATE_THRESHOLDS.get(spec.name)


def calibrated_threshold(sample: np.ndarray, n: int) -> float:
    """The cosine that a random pair of a collection's `n` items exceeds with probability
    DUPLICATE_TAIL / n, from the pairs of `sample` (some of its vectors): the distance
    1 - cosine taken as log-normal, fitted between its 10th and 1st percentiles (the 90th and
    99th of the cosine) and read further out. A fit, not the sample's own tail: near-copies
    would be that tail. Rounded to 4 decimals (the cosine then used and reported), at most
    CALIBRATED_MAX.

    Measured (bench/duplicates.py, where the presets' defaults were chosen) within 0.002 of
    the best threshold at edges and parts with avg, max and GeM pooling and on Lite1; with
    under a few hundred items it errs high (fewer groups), as the copies then weigh in."""
    if len(sample) < 2:
        return CALIBRATED_MAX
    unit = sample / np.maximum(np.linalg.norm(sample, axis=1, keepdims=True), 1e-12)
    cosines = (unit @ unit.T)[np.triu_indices(len(unit), 1)]
    low, high = np.quantile(cosines, _FIT_QUANTILES)
    far, near = math.log(max(1.0 - low, 1e-6)), math.log(max(1.0 - high, 1e-6))
    z = NormalDist().inv_cdf
    spread = max(far - near, 0.0) / (z(_FIT_QUANTILES[1]) - z(_FIT_QUANTILES[0]))
    tail = min(DUPLICATE_TAIL / max(n, 1), 1.0 - _FIT_QUANTILES[1])
    distance = math.exp(near - spread * (z(1.0 - tail) - z(_FIT_QUANTILES[1])))
    return min(max(round(1.0 - distance, 4), 0.0001), CALIBRATED_MAX)


def _sample_ids(ids: np.ndarray) -> np.ndarray:
    """Up to CALIBRATION_SAMPLE ids, evenly spread in id order: the same sample, hence the
    same default, for the same collection."""
    ordered = np.sort(ids)
    if len(ordered) <= CALIBRATION_SAMPLE:
        return ordered
    return ordered[np.linspace(0, len(ordered) - 1, CALIBRATION_SAMPLE).astype(np.int64)]


def _neighbours(
    index: VectorIndex,
    ids: np.ndarray,
    matrix: np.ndarray,
    threshold: float,
    alive: set[int],
    out: dict[int, Neighbours],
) -> None:
    """Each query's other live items at or above the threshold, into `out` (id -> ids, best
    first; queries without any are left out). k doubles for the queries whose k-th neighbour
    still passes, so dense clusters are followed fully, up to MAX_NEIGHBOURS."""
    for start in range(0, len(ids), CHUNK):
        queries, query_ids = matrix[start : start + CHUNK], ids[start : start + CHUNK]
        k = FIRST_K
        while len(queries):
            scores, found = index.search(queries, k)
            full = (scores[:, -1] >= threshold) & (found.shape[1] == k) & (k < index.ntotal)
            full &= k <= MAX_NEIGHBOURS
            for row, query_id in enumerate(query_ids.tolist()):
                if full[row]:
                    continue  # searched again with a larger k
                passing = (scores[row] >= threshold) & (found[row] >= 0)
                pairs = [
                    (other, score)
                    for other, score in zip(
                        found[row][passing].tolist(), scores[row][passing].tolist(), strict=True
                    )
                    if other != query_id and other in alive
                ][:MAX_NEIGHBOURS]
                if pairs:
                    others = np.array([o for o, _ in pairs], dtype=np.int64)
                    out[query_id] = Neighbours(others, sum(s for _, s in pairs) / len(pairs))
            queries, query_ids, k = queries[full], query_ids[full], k * 2


def _stars(neighbours: dict[int, Neighbours]) -> list[list[int]]:
    """The groups of the module's docstring: largest first, members by id."""
    order = sorted(
        neighbours, key=lambda item: (-len(neighbours[item].ids), -neighbours[item].mean, item)
    )
    group_of: dict[int, int] = {}
    groups: list[list[int]] = []
    for centre in order:
        if centre in group_of:
            continue
        members = [o for o in neighbours[centre].ids.tolist() if o not in group_of]
        if members:
            for item in (centre, *members):
                group_of[item] = len(groups)
            groups.append([centre, *members])
    for item in order:  # left out: all its neighbours were taken; join the closest's group
        if item not in group_of:
            closest = next((o for o in neighbours[item].ids.tolist() if o in group_of), None)
            if closest is not None:
                groups[group_of[closest]].append(item)
    return sorted((sorted(g) for g in groups), key=lambda g: (-len(g), g[0]))
