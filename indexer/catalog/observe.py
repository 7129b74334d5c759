"""What a replica holds, for metrics: the size of every index it has opened."""

from __future__ import annotations

from dataclasses import dataclass

from indexer.catalog.context import Context
from indexer.store import repository


@dataclass(frozen=True)
class IndexSize:
    collection: str
    depth: str
    kind: str
    vectors: int


def index_sizes(ctx: Context) -> list[IndexSize]:
    """One row per opened (collection, depth) index; indexes of deleted collections are
    left out (a replica drops them when it applies the drop)."""
    loaded = ctx.indexes.loaded()
    if not loaded:
        return []
    with ctx.sessions() as session:
        names = {c.id: c.name for c in repository.list_collections(session)}
    return [
        IndexSize(names[collection_id], depth, index.kind, index.ntotal)
        for (collection_id, depth), index in sorted(loaded.items())
        if collection_id in names
    ]
