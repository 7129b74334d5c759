"""Nearest-neighbour search in a collection, by image bytes, stored item id or raw vector,
at one or several depths, with label and metadata filters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from indexer.catalog.collections import CollectionInfo, get_collection
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput, NotFound, StrataError, quote
from indexer.core.metrics import timed_stage
from indexer.core.validation import check_filter
from indexer.core.vocabulary import check_request_size
from indexer.engine.extract import embed_prepared
from indexer.store import hit_reads, repository


@dataclass(frozen=True)
class Query:
    """Exactly one of image, item_id or vector; `name` is how results refer to it."""

    name: str
    image: bytes | None = None
    item_id: int | None = None
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class Filter:
    labels_any: Sequence[str] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.labels_any or self.metadata)


@dataclass(frozen=True)
class Hit:
    id: int
    uri: str
    score: float
    labels: tuple[str, ...]
    metadata: dict[str, str]


@dataclass(frozen=True)
class QueryResult:
    query: str
    results: dict[str, list[Hit]]  # depth -> hits, best first


def search(
    ctx: Context,
    collection_name: str,
    queries: Sequence[Query],
    depths: Sequence[str] = (),
    k: int = 10,
    where: Filter | None = None,
) -> list[QueryResult]:
    if not queries:
        raise InvalidInput(
            "a search needs at least one query", hint="give an image, an id or a vector"
        )
    if not 1 <= k <= ctx.settings.max_k:
        raise InvalidInput(f"k={k} is out of range", hint=f"use 1..{ctx.settings.max_k}")
    check_request_size(len(queries), ctx.settings.max_images_per_request, "queries")
    if where:
        check_filter(where.labels_any, where.metadata)
    # A cached spec saves a lone search a SELECT; the hits' SELECT checks it still holds.
    cached = ctx.specs.get(collection_name)
    if cached is not None:
        results = _search_cached(ctx, cached, queries, depths, k, where)
        if results is not None:
            return results
        # Deleted since it was cached (perhaps created again: a new id). The search may have
        # opened (empty) indexes for the dead id; ids are never reused.
        ctx.specs.evict(collection_name)
        ctx.indexes.drop_collection(cached.id)
    collection = get_collection(ctx, collection_name)
    ctx.specs.put(collection_name, collection)
    results = _search(ctx, collection, queries, depths, k, where)
    if results is None:
        raise NotFound(
            f"collection {quote(collection_name)} was deleted during the search",
            hint="create it again, or search another collection",
        )
    return results


def _search_cached(
    ctx: Context,
    cached: CollectionInfo,
    queries: Sequence[Query],
    depths: Sequence[str],
    k: int,
    where: Filter | None,
) -> list[QueryResult] | None:
    """The search with a cached spec, or None when the spec is stale."""
    try:
        return _search(ctx, cached, queries, depths, k, where)
    except StrataError:
        # A stale spec can also fail a query (a depth or item the old collection lacked).
        try:
            current = get_collection(ctx, cached.name).id == cached.id
        except NotFound:
            current = False
        except Exception:
            current = True  # cannot tell (the database is away): the query's own error stands
        if current:
            raise
        return None


def _search(
    ctx: Context,
    collection: CollectionInfo,
    queries: Sequence[Query],
    depths: Sequence[str],
    k: int,
    where: Filter | None,
) -> list[QueryResult] | None:
    """The search, or None when the collection no longer exists."""
    chosen = [collection.depth(d) for d in dict.fromkeys(depths)] or list(collection.depths)
    vectors = _query_vectors(ctx, collection, queries, [d.name for d in chosen])
    allowed = None
    if where:
        with ctx.sessions() as session:
            allowed = repository.filter_item_ids(
                session, collection.id, where.labels_any, where.metadata
            )
    raw: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with timed_stage("index_search"):
        for depth in chosen:
            present = [i for i, v in enumerate(vectors) if depth.name in v]
            matrix = np.stack([vectors[i][depth.name] for i in present]) if present else None
            if matrix is None:
                continue
            index = ctx.indexes.get(collection.id, depth.name, depth.dim)
            if allowed is not None and len(allowed) == 0:
                continue
            scores, ids = index.search(matrix, k, allowed)
            full_scores = np.full((len(queries), scores.shape[1]), -np.inf, np.float32)
            full_ids = np.full((len(queries), ids.shape[1]), -1, np.int64)
            full_scores[present], full_ids[present] = scores, ids
            raw[depth.name] = (full_scores, full_ids)
    return _resolve_hits(ctx, collection, queries, [d.name for d in chosen], raw)


def _query_vectors(
    ctx: Context, collection: CollectionInfo, queries: Sequence[Query], depths: list[str]
) -> list[dict[str, np.ndarray]]:
    """Per query, depth -> unit vector. Images share one forward pass."""
    out: list[dict[str, np.ndarray]] = [{} for _ in queries]
    image_positions = []
    for position, query in enumerate(queries):
        given = sum(x is not None for x in (query.image, query.item_id, query.vector))
        if given != 1:
            raise InvalidInput(
                f"query {quote(query.name)} must give exactly one of image, item id or vector",
                hint="send one kind of query per entry",
            )
        if query.image is not None:
            image_positions.append(position)
        elif query.item_id is not None:
            with ctx.sessions() as session:
                stored = repository.query_vectors_of_item(session, collection.id, query.item_id)
            out[position] = {d: stored[d] for d in depths if d in stored}
        else:
            out[position] = _raw_vector(collection, query, depths)
    if image_positions:
        backbone = ctx.backbones.get(collection.backbone)
        pre = backbone.spec.preprocessing.framed(collection.framing)
        # Decoded in the pool: a batch of queries (see service/batcher.py) decodes in parallel.
        outcomes = ctx.prepare_images(
            [(queries[p].name, queries[p].image or b"") for p in image_positions], backbone, pre
        )
        prepared = []
        for outcome in outcomes:
            if isinstance(outcome, StrataError):
                raise outcome
            prepared.append(outcome)
        layers = {d: collection.depth(d).layer for d in depths}
        features = embed_prepared(
            backbone, prepared, list(layers.values()), collection.pooling, ctx.settings.batch_size
        )
        for row, position in enumerate(image_positions):
            out[position] = {d: features.vectors[layer][row] for d, layer in layers.items()}
    return out


def _raw_vector(
    collection: CollectionInfo, query: Query, depths: list[str]
) -> dict[str, np.ndarray]:
    vector = np.asarray(query.vector, dtype=np.float32).ravel()
    matching = [d for d in depths if collection.depth(d).dim == len(vector)]
    if len(depths) != 1 or not matching:
        dims = ", ".join(f"{d.name}={d.dim}" for d in collection.depths)
        raise InvalidInput(
            f"vector query {quote(query.name)} has {len(vector)} dims; it needs exactly one depth "
            f"of that size",
            hint=f"name one depth; this collection's dims are {dims}",
        )
    if not np.isfinite(vector).all():
        raise InvalidInput(
            f"vector query {quote(query.name)} holds NaN or infinite values",
            hint="send finite numbers",
        )
    # Scale by the largest magnitude first, in float64: the squares of finite float32
    # values as tiny as 1e-30 or as huge as 1e30 must neither underflow nor overflow.
    wide = vector.astype(np.float64)
    peak = float(np.abs(wide).max(initial=0.0))
    if peak == 0.0:
        raise InvalidInput(f"vector query {quote(query.name)} is all zeros", hint="a direction")
    wide /= peak
    return {matching[0]: (wide / np.linalg.norm(wide)).astype(np.float32)}


def _resolve_hits(
    ctx: Context,
    collection: CollectionInfo,
    queries: Sequence[Query],
    depths: list[str],
    raw: dict[str, tuple[np.ndarray, np.ndarray]],
) -> list[QueryResult] | None:
    all_ids = sorted({int(i) for _, ids in raw.values() for i in ids.ravel() if i >= 0})
    with timed_stage("hit_details"):
        details = hit_reads.hit_details(ctx.engine, ctx.sessions, collection.id, all_ids)
    if details is None:
        return None
    results = []
    for position, query in enumerate(queries):
        per_depth: dict[str, list[Hit]] = {}
        for depth in depths:
            if depth not in raw:
                per_depth[depth] = []
                continue
            scores, ids = raw[depth]
            hits = []
            for score, item_id in zip(scores[position], ids[position], strict=True):
                # An id FAISS still holds but SQL deleted is never served.
                if item_id < 0 or int(item_id) not in details:
                    continue
                uri, labels, metadata = details[int(item_id)]
                hits.append(Hit(int(item_id), uri, float(score), labels, metadata))
            per_depth[depth] = hits
        results.append(QueryResult(query.name, per_depth))
    return results
