"""Thumbnails in SQL. Each function takes the caller's session;
none commits. Every ingest path (indexer.catalog.ingest, a distributed one) stores
thumbnails through `put_thumbnails`, in the transaction that inserts the items."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from indexer.imaging.thumbnail import Thumbnail as ThumbnailImage
from indexer.store.models import Item, Thumbnail
from indexer.store.repository import of_collection

CHUNK = 500


def put_thumbnails(session: Session, rows: Sequence[tuple[int, ThumbnailImage | None]]) -> int:
    """Store (item id, thumbnail) rows, replacing an item's earlier one; rows whose
    thumbnail is None are skipped. Returns how many were written."""
    wanted = {item_id: thumb for item_id, thumb in rows if thumb is not None}
    if not wanted:
        return 0
    ids = list(wanted)
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        session.execute(delete(Thumbnail).where(Thumbnail.item_id.in_(chunk)))
    session.execute(
        insert(Thumbnail),
        [
            {
                "item_id": item_id,
                "media_type": thumb.media_type,
                "width": thumb.width,
                "height": thumb.height,
                "data": thumb.data,
            }
            for item_id, thumb in wanted.items()
        ],
    )
    return len(wanted)


def get_thumbnails(
    session: Session, collection_id: int, ids: Sequence[int]
) -> tuple[dict[int, ThumbnailImage], set[int]]:
    """The thumbnails of `ids` in the collection, and the ids that are items of the
    collection at all (those without a thumbnail are the ones to backfill)."""
    found: dict[int, ThumbnailImage] = {}
    existing: set[int] = set()
    unique = list(dict.fromkeys(int(i) for i in ids))
    for start in range(0, len(unique), CHUNK):
        chunk = unique[start : start + CHUNK]
        rows = session.execute(
            select(Item.id, Thumbnail.media_type, Thumbnail.data, Thumbnail.width, Thumbnail.height)
            .outerjoin(Thumbnail, Thumbnail.item_id == Item.id)
            .where(of_collection(collection_id), Item.id.in_(chunk))
        )
        for item_id, media_type, data, width, height in rows:
            existing.add(item_id)
            if data is not None:
                found[item_id] = ThumbnailImage(media_type, data, width, height)
    return found, existing


def count_thumbnails(session: Session, collection_id: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Thumbnail)
            .join(Item, Item.id == Thumbnail.item_id)
            .where(Item.collection_id == collection_id)
        )
        or 0
    )
