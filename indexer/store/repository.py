"""Repository functions over the SQL store. Each takes the caller's session; none commits."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from indexer.core.errors import AlreadyExists, InvalidInput, NotFound, StrataError, quote
from indexer.core.vocabulary import DEFAULT_FRAMING, HUMAN
from indexer.store import change_log
from indexer.store.models import (
    Collection,
    Depth,
    Item,
    Label,
    MetadataEntry,
    Thumbnail,
    Vector,
)

VECTOR_CHUNK = 5000


def of_collection(collection_id: Any) -> ColumnElement[bool]:
    """`items.collection_id = ?` for queries that also give item ids, written so that no
    index can serve it: the planner then looks the ids up by primary key. Written plainly,
    SQLite (no statistics) served it at 1M items from the (collection_id, uri) index,
    reading every item of the collection: 110 ms for a search's hits, 2 ms by key."""
    return (Item.collection_id + 0) == collection_id


@dataclass(frozen=True)
class DepthSpec:
    name: str
    layer: str
    dim: int


# -- collections --------------------------------------------------------------------------


def create_collection(
    session: Session,
    name: str,
    backbone: str,
    pooling: str,
    depths: Sequence[DepthSpec],
    framing: str = DEFAULT_FRAMING,
) -> Collection:
    if session.scalar(select(Collection.id).where(Collection.name == name)) is not None:
        raise _collection_exists(name)
    collection = Collection(
        name=name,
        backbone=backbone,
        pooling=pooling,
        framing=framing,
        depths=[
            Depth(name=d.name, layer=d.layer, dim=d.dim, position=i) for i, d in enumerate(depths)
        ],
    )
    session.add(collection)
    try:
        session.flush()
    except IntegrityError as exc:
        # Another process on the same database (a replica) created the name between the
        # check above and this insert: the answer the check would have given had it been
        # first. The caller's transaction is spoilt and must roll back (its `begin` does).
        if _violates_unique_name(exc):
            raise _collection_exists(name) from exc
        raise
    return collection


def _collection_exists(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"collection {quote(name)} already exists",
        hint="pick another name, or delete it first with `strata collections delete`",
    )


#: How each database names the unique constraint on collections.name when it is violated.
_UNIQUE_NAME_VIOLATIONS = (
    "collections_name_key",  # PostgreSQL's name for the unnamed UNIQUE (name)
    "unique constraint failed: collections.name",  # SQLite
)


def _violates_unique_name(error: IntegrityError) -> bool:
    text = str(error.orig if error.orig is not None else error).lower()
    return any(words in text for words in _UNIQUE_NAME_VIOLATIONS)


def get_collection(session: Session, name: str) -> Collection:
    collection = session.scalar(select(Collection).where(Collection.name == name))
    if collection is None:
        raise _no_collection(name)
    return collection


def _no_collection(name: str) -> StrataError:
    if not name:  # a request that forgot the field, not a collection that went away
        return InvalidInput(
            "the request names no collection",
            hint="name one (--collection NAME; `strata collections list` shows them)",
        )
    return NotFound(
        f"collection {quote(name)} does not exist",
        hint="list them with `strata collections list` or create it first",
    )


#: A collection's columns with its depths in order, one row a depth. Built once: building
#: and compiling the statement cost more than running it.
_COLLECTION_SPEC = (
    select(
        Collection.id,
        Collection.name,
        Collection.backbone,
        Collection.pooling,
        Collection.framing,
        Depth.name,
        Depth.layer,
        Depth.dim,
    )
    .join(Depth, Depth.collection_id == Collection.id, isouter=True)
    .where(Collection.name == bindparam("name"))
    .order_by(Depth.position)
)


@dataclass(frozen=True)
class CollectionSpec:
    """What a search or an ingest batch needs of a collection."""

    id: int
    name: str
    backbone: str
    pooling: str
    framing: str
    depths: tuple[DepthSpec, ...]


def collection_spec(session: Session, name: str) -> CollectionSpec:
    """The collection by one plain SELECT: no ORM objects, which cost a lone search 1 ms of
    its 20."""
    rows = list(session.connection().execute(_COLLECTION_SPEC, {"name": name}))
    if not rows:
        raise _no_collection(name)
    collection_id, found, backbone, pooling, framing = rows[0][:5]
    depths = tuple(DepthSpec(r[5], r[6], r[7]) for r in rows if r[5] is not None)
    return CollectionSpec(collection_id, found, backbone, pooling, framing, depths)


def list_collections(session: Session) -> list[Collection]:
    return list(session.scalars(select(Collection).order_by(Collection.name)))


def count_items(session: Session, collection_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(Item).where(Item.collection_id == collection_id)
        )
        or 0
    )


def count_vectors(session: Session, collection_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Vector.depth, func.count())
        .join(Item, Item.id == Vector.item_id)
        .where(Item.collection_id == collection_id)
        .group_by(Vector.depth)
    )
    return {depth: count for depth, count in rows}


def delete_collection(session: Session, collection: Collection) -> None:
    change_log.serialise_writers(session)  # before any row lock (see change_log)
    # Delete children in bulk first: ORM cascades would load every row.
    item_ids = select(Item.id).where(Item.collection_id == collection.id)
    for table in (Vector, Label, MetadataEntry, Thumbnail):
        session.execute(delete(table).where(table.item_id.in_(item_ids)))
    session.execute(delete(Item).where(Item.collection_id == collection.id))
    change_log.record(session, collection.id, change_log.DROP)
    session.delete(collection)


def bump_version(session: Session, collection_id: int) -> None:
    """Mark the collection's set of items changed (Collection.version).

    Called before the change's first write: the row lock it takes on PostgreSQL is then
    the first lock of the transaction, so writers queue on it instead of deadlocking."""
    session.execute(
        update(Collection)
        .where(Collection.id == collection_id)
        .values(version=Collection.version + 1)
    )


def collection_version(session: Session, collection_id: int) -> int:
    return int(
        session.scalar(select(Collection.version).where(Collection.id == collection_id)) or 0
    )


# -- items --------------------------------------------------------------------------------


def find_items_by_uri(session: Session, collection_id: int, uris: Sequence[str]) -> dict[str, Item]:
    found: dict[str, Item] = {}
    for start in range(0, len(uris), 500):
        chunk = list(uris[start : start + 500])
        query = select(Item).where(Item.collection_id == collection_id, Item.uri.in_(chunk))
        found.update({item.uri: item for item in session.scalars(query)})
    return found


@dataclass(frozen=True)
class NewItem:
    """An item to insert, with its labels as (label, source, confidence) and metadata."""

    uri: str
    content_hash: str
    width: int
    height: int
    labels: Sequence[tuple[str, str, float]] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)


def insert_items(session: Session, collection_id: int, new: Sequence[NewItem]) -> list[int]:
    """Insert items with one INSERT ... RETURNING (ids in the order given), then their
    labels and metadata with one executemany each: no ORM object per row, which cost
    about 0.5 ms an image and capped GPU ingest."""
    if not new:
        return []
    change_log.serialise_writers(session)  # first: before bump_version's row lock
    bump_version(session, collection_id)
    now = datetime.now(UTC)
    ids = list(
        session.scalars(
            insert(Item).returning(Item.id, sort_by_parameter_order=True),
            [
                {
                    "collection_id": collection_id,
                    "uri": n.uri,
                    "content_hash": n.content_hash,
                    "width": n.width,
                    "height": n.height,
                    "created_at": now,
                }
                for n in new
            ],
        )
    )
    labels = [
        {"item_id": item_id, "label": label, "source": source, "confidence": confidence}
        for item_id, n in zip(ids, new, strict=True)
        for label, source, confidence in n.labels
    ]
    if labels:
        session.execute(insert(Label), labels)
    metadata = [
        {"item_id": item_id, "key": key, "value": value}
        for item_id, n in zip(ids, new, strict=True)
        for key, value in n.metadata.items()
    ]
    if metadata:
        session.execute(insert(MetadataEntry), metadata)
    change_log.record(session, collection_id, change_log.ADD, ids)
    return ids


def annotate_items(
    session: Session, annotations: Mapping[int, tuple[Sequence[str], Mapping[str, str]]]
) -> None:
    """Labels and metadata sent again with images already stored (item id -> (labels,
    metadata)): the labels join the item's human labels, and its predicted labels go, as
    when a person labels it; each metadata key takes the value sent."""
    for item_id, (labels, metadata) in annotations.items():
        if labels:
            session.execute(delete(Label).where(Label.item_id == item_id, Label.source != HUMAN))
            have = set(session.scalars(select(Label.label).where(Label.item_id == item_id)))
            session.add_all(
                Label(item_id=item_id, label=label, source=HUMAN, confidence=1.0)
                for label in dict.fromkeys(labels)
                if label not in have
            )
        if metadata:
            session.execute(
                delete(MetadataEntry).where(
                    MetadataEntry.item_id == item_id, MetadataEntry.key.in_(list(metadata))
                )
            )
            session.add_all(
                MetadataEntry(item_id=item_id, key=key, value=value)
                for key, value in metadata.items()
            )


def insert_vectors(session: Session, rows: Sequence[tuple[int, str, np.ndarray]]) -> None:
    """(item id, depth, vector) rows of items that have no vectors yet, in one executemany."""
    if rows:
        session.execute(
            insert(Vector),
            [
                {"item_id": item_id, "depth": depth, "data": np.asarray(v, np.float32).tobytes()}
                for item_id, depth, v in rows
            ],
        )


def get_items(session: Session, collection_id: int, ids: Sequence[int]) -> dict[int, Item]:
    found: dict[int, Item] = {}
    for start in range(0, len(ids), 500):
        chunk = [int(i) for i in ids[start : start + 500]]
        query = select(Item).where(of_collection(collection_id), Item.id.in_(chunk))
        found.update({item.id: item for item in session.scalars(query)})
    return found


def hit_details(
    session: Session, collection_id: int, ids: Sequence[int]
) -> dict[int, tuple[str, tuple[str, ...], dict[str, str]]] | None:
    """id -> (uri, sorted labels, metadata) of the items that exist, for search results, or
    None when the collection itself no longer exists (a search working from a cached spec
    learns so here, at no extra cost). One plain SELECT a chunk (the collection, items, labels
    and metadata in a UNION ALL) on the session's connection, no ORM objects or ORM execution
    (a lone search's SQL cost 5 ms with them, on a 20 ms search). Searches call it through
    store/hit_reads.py, which runs one fixed statement on the driver's connection first."""
    connection = session.connection()
    rows: list[Any] = []
    for start in range(0, max(len(ids), 1), 500):  # one statement even with no ids
        chunk = [int(i) for i in ids[start : start + 500]]
        found = list(connection.execute(_HIT_ROWS, {"collection": collection_id, "ids": chunk}))
        # In every chunk's statement: a delete between two must not pass.
        if not any(kind == "collection" for _, kind, _, _ in found):
            return None
        rows.extend(found)
    return collect_hit_rows(rows)


def collect_hit_rows(
    rows: Iterable[Any],
) -> dict[int, tuple[str, tuple[str, ...], dict[str, str]]] | None:
    """hit_details' answer from its (item id, kind, name, value) rows, or None without the
    row of kind "collection"."""
    uris: dict[int, str] = {}
    labels: dict[int, list[str]] = {}
    metadata: dict[int, dict[str, str]] = {}
    exists = False
    for item_id, kind, name, value in rows:
        if kind == "uri":
            uris[item_id] = name
        elif kind == "label":
            labels.setdefault(item_id, []).append(name)
        elif kind == "meta":
            metadata.setdefault(item_id, {})[name] = value
        else:
            exists = True
    if not exists:
        return None
    # Labels and metadata of an id outside this collection (none are expected) are dropped.
    return {
        i: (uri, tuple(sorted(labels.get(i, ()))), metadata.get(i, {})) for i, uri in uris.items()
    }


_HIT_IDS: Any = bindparam("ids", expanding=True)

#: Built once (see _COLLECTION_SPEC): (item id, kind, name, value) rows of kind "uri",
#: "label" or "meta", and one of kind "collection" (its id) while the collection exists.
_HIT_ROWS = union_all(
    select(Collection.id, literal("collection"), literal(""), literal("")).where(
        Collection.id == bindparam("collection")
    ),
    select(Item.id, literal("uri"), Item.uri, literal("")).where(
        of_collection(bindparam("collection")), Item.id.in_(_HIT_IDS)
    ),
    select(Label.item_id, literal("label"), Label.label, literal("")).where(
        Label.item_id.in_(_HIT_IDS)
    ),
    select(MetadataEntry.item_id, literal("meta"), MetadataEntry.key, MetadataEntry.value).where(
        MetadataEntry.item_id.in_(_HIT_IDS)
    ),
)


def get_item(session: Session, collection_id: int, item_id: int) -> Item:
    item = get_items(session, collection_id, [item_id]).get(item_id)
    if item is None:
        raise _no_item(item_id)
    return item


def _no_item(item_id: int) -> NotFound:
    return NotFound(
        f"item {item_id} does not exist in this collection",
        hint="ids come from `strata index` or `strata search` output",
    )


def delete_items(session: Session, collection_id: int, ids: Sequence[int]) -> list[int]:
    """Delete the given items; returns the ids that existed."""
    existing = list(get_items(session, collection_id, ids))
    if existing:
        change_log.serialise_writers(session)  # first: before bump_version's row lock
        bump_version(session, collection_id)
        for table in (Vector, Label, MetadataEntry, Thumbnail):
            session.execute(delete(table).where(table.item_id.in_(existing)))
        session.execute(delete(Item).where(Item.id.in_(existing)))
        change_log.record(session, collection_id, change_log.DELETE, existing)
    return existing


# -- vectors ------------------------------------------------------------------------------


def vector_ids(session: Session, collection_id: int, depth: str) -> np.ndarray:
    query = (
        select(Vector.item_id)
        .join(Item, Item.id == Vector.item_id)
        .where(Item.collection_id == collection_id, Vector.depth == depth)
    )
    return np.fromiter(session.scalars(query), dtype=np.int64)


def iter_vectors(
    session: Session,
    collection_id: int,
    depth: str,
    dim: int,
    only_ids: np.ndarray | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, matrix) chunks of the stored vectors at `depth`, in id order."""
    base = (
        select(Vector.item_id, Vector.data)
        .join(Item, Item.id == Vector.item_id)
        .where(Item.collection_id == collection_id, Vector.depth == depth)
        .order_by(Vector.item_id)
    )
    if only_ids is not None:
        for start in range(0, len(only_ids), VECTOR_CHUNK):
            chunk = [int(i) for i in only_ids[start : start + VECTOR_CHUNK]]
            yield from _chunks(session, base.where(Vector.item_id.in_(chunk)), dim)
    else:
        yield from _chunks(session, base, dim)


def _chunks(session: Session, query: Any, dim: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    result = session.execute(query.execution_options(yield_per=VECTOR_CHUNK))
    for rows in result.partitions():
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
        yield ids, matrix.reshape(len(rows), dim)


#: Built once (see _COLLECTION_SPEC): an item of a collection and its vectors, one row a
#: depth (depth None for an item without vectors); no row when the item is not there.
_STORED_QUERY = (
    select(Item.id, Vector.depth, Vector.data)
    .join(Vector, Vector.item_id == Item.id, isouter=True)
    .where(Item.id == bindparam("item"), of_collection(bindparam("collection")))
)


def query_vectors_of_item(
    session: Session, collection_id: int, item_id: int
) -> dict[str, np.ndarray]:
    """depth -> stored vector of an item, for a search by item: one plain SELECT on the
    session's connection (the ORM's get_item loaded the item, its labels and metadata to
    check it exists: 2 of a 3 ms search)."""
    rows = list(
        session.connection().execute(_STORED_QUERY, {"item": item_id, "collection": collection_id})
    )
    if not rows:
        raise _no_item(item_id)
    return {depth: np.frombuffer(data, np.float32) for _, depth, data in rows if depth is not None}


def item_vectors(session: Session, item_id: int) -> dict[str, np.ndarray]:
    rows = session.execute(select(Vector.depth, Vector.data).where(Vector.item_id == item_id))
    return {depth: np.frombuffer(data, dtype=np.float32) for depth, data in rows}


def filter_item_ids(
    session: Session,
    collection_id: int,
    labels_any: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Ids of items carrying any of `labels_any` and every metadata key=value given."""
    query = select(Item.id).where(Item.collection_id == collection_id)
    if labels_any:
        query = query.where(
            Item.id.in_(select(Label.item_id).where(Label.label.in_(list(labels_any))))
        )
    if metadata:
        query = query.where(Item.id.in_(items_with_metadata(metadata)))
    return np.fromiter(session.scalars(query), dtype=np.int64)


def items_with_metadata(metadata: Mapping[str, str]) -> Select[int]:
    """Ids of the items carrying every key=value of `metadata`, as a subquery.

    One scan for all pairs, not one subquery each: an item has one value per key (the
    primary key is item, key), so matching all n pairs is n matching rows. Nested IN
    subqueries per key kept PostgreSQL's planner busy for an hour at 64 keys."""
    pairs = [and_(MetadataEntry.key == k, MetadataEntry.value == v) for k, v in metadata.items()]
    return (
        select(MetadataEntry.item_id)
        .where(or_(*pairs))
        .group_by(MetadataEntry.item_id)
        .having(func.count() == len(pairs))
    )
