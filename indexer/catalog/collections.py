"""Collections: a backbone, a pooling and fixed depths, so every vector in an index compares."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from indexer.backbones.registry import get_backbone
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput, NotFound, quote
from indexer.core.vocabulary import (
    DEFAULT_BACKBONE,
    DEFAULT_FRAMING,
    DEFAULT_POOLING,
    DEPTH_PRESETS,
    FRAMINGS,
    check_pooling,
)
from indexer.store import change_log, repository
from indexer.store.models import Collection
from indexer.store.repository import CollectionSpec, DepthSpec

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class CollectionInfo(CollectionSpec):
    """The collection's spec, with its counts when asked for (zeros otherwise)."""

    items: int
    vectors: dict[str, int]  # depth -> vector rows in SQL
    #: depth -> vectors in the live FAISS index (only filled with counts; equals `vectors`
    #: when the index is level with SQL).
    index_vectors: dict[str, int] = field(default_factory=dict)

    def depth(self, name: str) -> DepthSpec:
        for depth in self.depths:
            if depth.name == name:
                return depth
        raise NotFound(
            f"collection {quote(self.name)} has no depth {quote(name)}",
            hint=f"its depths are: {', '.join(d.name for d in self.depths)}",
        )


def info(
    collection: Collection, items: int = 0, vectors: dict[str, int] | None = None
) -> CollectionInfo:
    return CollectionInfo(
        id=collection.id,
        name=collection.name,
        backbone=collection.backbone,
        pooling=collection.pooling,
        framing=collection.framing,
        depths=tuple(DepthSpec(d.name, d.layer, d.dim) for d in collection.depths),
        items=items,
        vectors=vectors or {},
    )


def _spec_info(spec: CollectionSpec) -> CollectionInfo:
    return CollectionInfo(**vars(spec), items=0, vectors={})


def create_collection(
    ctx: Context,
    name: str,
    backbone: str = DEFAULT_BACKBONE,
    depths: Sequence[str] = DEPTH_PRESETS,
    pooling: str = DEFAULT_POOLING,
    framing: str = DEFAULT_FRAMING,
) -> CollectionInfo:
    if not _NAME.match(name):
        raise InvalidInput(
            f"collection name {quote(name)} is not valid",
            hint="use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    check_pooling(pooling)
    if framing not in FRAMINGS:
        raise InvalidInput(
            f"framing {quote(framing)} is not known",
            hint=f"use one of: {', '.join(FRAMINGS)} (whole suits thumbnails such as CIFAR)",
        )
    depths = list(dict.fromkeys(d.strip() for d in depths if d.strip()))
    if not depths:
        raise InvalidInput(
            "a collection needs at least one depth", hint="e.g. edges,parts,semantics"
        )
    spec = get_backbone(backbone)
    loaded = ctx.backbones.get(backbone)  # refuses a backbone whose weights are missing
    specs = []
    for depth in depths:
        layer = loaded.layer(depth)
        specs.append(DepthSpec(depth, layer.name, layer.channels))
    with ctx.sessions.begin() as session:
        collection = repository.create_collection(session, name, spec.name, pooling, specs, framing)
        return info(collection)


def get_collection(ctx: Context, name: str, with_counts: bool = False) -> CollectionInfo:
    with ctx.sessions() as session:
        if not with_counts:  # every search and ingest batch: the plain-SQL lookup
            return _spec_info(repository.collection_spec(session, name))
        collection = repository.get_collection(session, name)
        counted = info(
            collection,
            repository.count_items(session, collection.id),
            repository.count_vectors(session, collection.id),
        )
    live = {d.name: ctx.indexes.get(counted.id, d.name, d.dim).ntotal for d in counted.depths}
    return replace(counted, index_vectors=live)


def list_collections(ctx: Context) -> list[CollectionInfo]:
    """Every collection with its counts, and the live size of each FAISS index already open
    (a server opens all of its collections' at start, and a collection another replica
    created once it is used; listing never loads one from disk: 0 until then)."""
    with ctx.sessions() as session:
        counted = [
            info(c, repository.count_items(session, c.id), repository.count_vectors(session, c.id))
            for c in repository.list_collections(session)
        ]
    live = {key: index.ntotal for key, index in ctx.indexes.loaded().items()}
    return [
        replace(
            c,
            index_vectors={
                d.name: live[(c.id, d.name)] for d in c.depths if (c.id, d.name) in live
            },
        )
        for c in counted
    ]


def delete_collection(ctx: Context, name: str) -> None:
    with ctx.sessions.begin() as session:
        # The write-order lock before the look-up: servers deleting the collection at once
        # then take turns, and all but the first find it gone (NotFound) instead of each
        # deleting nothing and answering OK.
        change_log.serialise_writers(session)
        collection = repository.get_collection(session, name)
        collection_id = collection.id
        repository.delete_collection(session, collection)
    ctx.specs.evict(name)
    ctx.indexes.drop_collection(collection_id)
