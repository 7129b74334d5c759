"""Item listings (filtered, sorted, keyset-paged) and cached projections in SQL. Each
function takes the caller's session; none commits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.orm import Session

from indexer.core.vocabulary import UNLABELLED
from indexer.store import repository
from indexer.store.models import Item, Label, Projection, Thumbnail

#: A position in a listing: the sort key of the last item shown and its id (ties by id).
After = tuple[Any, int]


@dataclass(frozen=True)
class ItemPage:
    items: list[Item]
    #: The (sort key, id) of each row of the page (the last one is the next page's `after`).
    keys: list[After]
    more: bool
    total: int


def _conditions(
    collection_id: int,
    labels_any: Sequence[str],
    metadata: Mapping[str, str],
    label_source: str,
    without_thumbnail: bool,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Item.collection_id == collection_id]
    if labels_any:
        conditions.append(
            Item.id.in_(select(Label.item_id).where(Label.label.in_(list(labels_any))))
        )
    if metadata:
        conditions.append(Item.id.in_(repository.items_with_metadata(metadata)))
    if label_source == UNLABELLED:
        conditions.append(Item.id.not_in(select(Label.item_id)))
    elif label_source:
        conditions.append(Item.id.in_(select(Label.item_id).where(Label.source == label_source)))
    if without_thumbnail:
        conditions.append(Item.id.not_in(select(Thumbnail.item_id)))
    return conditions


def list_items(
    session: Session,
    collection_id: int,
    *,
    order_by: str = "id",
    labels_any: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
    label_source: str = "",
    without_thumbnail: bool = False,
    after: After | None = None,
    limit: int = 100,
) -> ItemPage:
    """One page of the collection's items matching the filters, sorted by `order_by`
    ("id", "uri", "confidence", "-" first for descending), ties broken by id in the same
    direction. `after` continues from a previous page's last key (keyset paging: items
    added or deleted meanwhile never shift the rest).

    An item's confidence is the highest confidence among its labels (of `label_source`
    when that names a source), 0 when it has none. Uris sort by code point on every
    database (PostgreSQL's collation "C"), as Python's sorted() does."""
    conditions = _conditions(
        collection_id, labels_any, metadata or {}, label_source, without_thumbnail
    )
    total = int(session.scalar(select(func.count()).select_from(Item).where(*conditions)) or 0)
    descending = order_by.startswith("-")
    field = order_by.lstrip("-")
    key: Any  # a column or expression to sort and compare on
    query: Any
    if field == "confidence":
        # Per item through the labels' primary key (item_id first): measured 10-15% faster
        # than grouping the collection's labels and joining them back.
        best = select(func.max(Label.confidence)).where(Label.item_id == Item.id)
        if label_source and label_source != UNLABELLED:
            best = best.where(Label.source == label_source)
        key = func.coalesce(best.correlate(Item).scalar_subquery(), 0.0)
        query = select(Item.id, key)
    elif field == "uri":
        postgres = session.get_bind().dialect.name == "postgresql"
        key = Item.uri.collate("C") if postgres else Item.uri
        query = select(Item.id, Item.uri)
    else:
        key = Item.id
        query = select(Item.id, Item.id)
    query = query.where(*conditions)
    if after is not None:
        value, last_id = after
        if field == "id":
            query = query.where(Item.id < last_id if descending else Item.id > last_id)
        elif descending:
            query = query.where(or_(key < value, and_(key == value, Item.id < last_id)))
        else:
            query = query.where(or_(key > value, and_(key == value, Item.id > last_id)))
    if descending:
        query = query.order_by(key.desc(), Item.id.desc())
    else:
        query = query.order_by(key.asc(), Item.id.asc())
    # Ids and keys first, then the page's rows: sorting narrow (id, key) rows instead of
    # whole items halved a -confidence page at 100k items.
    rows = session.execute(query.limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [int(row[0]) for row in rows]
    found = {item.id: item for item in session.scalars(select(Item).where(Item.id.in_(ids)))}
    return ItemPage(
        items=[found[i] for i in ids if i in found],  # one deleted in between is left out
        keys=[(row[1], int(row[0])) for row in rows],
        more=more,
        total=total,
    )


# -- projections ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredProjection:
    version: int
    ids: np.ndarray  # int64 (n,)
    xy: np.ndarray  # float32 (n, 2)
    seconds: float


def get_projection(
    session: Session, collection_id: int, depth: str, method: str
) -> StoredProjection | None:
    row = session.get(Projection, (collection_id, depth, method))
    if row is None:
        return None
    return StoredProjection(
        version=row.version,
        ids=np.frombuffer(row.ids, dtype="<i8").astype(np.int64),
        xy=np.frombuffer(row.xy, dtype="<f4").astype(np.float32).reshape(row.count, 2),
        seconds=row.seconds,
    )


def put_projection(
    session: Session, collection_id: int, depth: str, method: str, value: StoredProjection
) -> None:
    """Replace the cached projection of (collection, depth, method)."""
    session.execute(
        delete(Projection).where(
            Projection.collection_id == collection_id,
            Projection.depth == depth,
            Projection.method == method,
        )
    )
    session.add(
        Projection(
            collection_id=collection_id,
            depth=depth,
            method=method,
            version=value.version,
            count=len(value.ids),
            ids=np.asarray(value.ids, dtype="<i8").tobytes(),
            xy=np.asarray(value.xy, dtype="<f4").tobytes(),
            seconds=value.seconds,
        )
    )
