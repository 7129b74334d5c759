"""SQL schema (SQLAlchemy 2.0 typed models). SQL is the source of truth, vectors included."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from indexer.core.vocabulary import HUMAN


def _now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Collection(Base):
    """A set of images embedded with one backbone, one pooling and fixed depths."""

    __tablename__ = "collections"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    backbone: Mapped[str] = mapped_column(String(100))
    pooling: Mapped[str] = mapped_column(String(20))
    #: One of vocabulary.FRAMINGS (see indexer.imaging.framing); rows older than framings
    #: (migration 0002) were framed with the centre crop.
    framing: Mapped[str] = mapped_column(String(20), server_default="center-crop")
    #: Bumped by every add and delete of items (repository.insert_items / delete_items), so
    #: whatever is derived from the set of items (a cached projection) knows it is stale.
    version: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    depths: Mapped[list[Depth]] = relationship(
        back_populates="collection", cascade="all, delete-orphan", order_by="Depth.position"
    )


class Depth(Base):
    """One tap of a collection: a depth name (preset or layer name), its layer and dim."""

    __tablename__ = "collection_depths"

    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    layer: Mapped[str] = mapped_column(String(200))
    dim: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(Integer)
    collection: Mapped[Collection] = relationship(back_populates="depths")


class Item(Base):
    """One image of a collection; unique by uri within the collection."""

    __tablename__ = "items"
    # AUTOINCREMENT: ids are never reused, so an id always means one image's vectors.
    __table_args__ = (
        UniqueConstraint("collection_id", "uri", name="uq_items_collection_uri"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    uri: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    labels: Mapped[list[Label]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )
    meta: Mapped[list[MetadataEntry]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin"
    )


class Label(Base):
    """A label on an item, from a human or predicted (with confidence)."""

    __tablename__ = "labels"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    source: Mapped[str] = mapped_column(String(20), default=HUMAN)  # vocabulary.LABEL_SOURCES
    confidence: Mapped[float] = mapped_column(Float, default=1.0)


class MetadataEntry(Base):
    """User metadata as key/value rows: portable across SQLite and PostgreSQL, filterable."""

    __tablename__ = "item_metadata"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text, index=False)


class Vector(Base):
    """An item's embedding at one depth: float32 bytes, unit length."""

    __tablename__ = "vectors"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    depth: Mapped[str] = mapped_column(String(200), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Probe(Base):
    """A linear probe trained on one depth of a collection: its classes, weights on
    standardised features, the standardisation and the cross-validated metrics."""

    __tablename__ = "probes"

    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    depth: Mapped[str] = mapped_column(String(200), primary_key=True)
    classes: Mapped[str] = mapped_column(Text)  # JSON list, index-aligned with weight columns
    weight: Mapped[bytes] = mapped_column(LargeBinary)  # float32 (dim, classes)
    bias: Mapped[bytes] = mapped_column(LargeBinary)  # float32 (classes,)
    mean: Mapped[bytes] = mapped_column(LargeBinary)  # float32 (dim,)
    scale: Mapped[bytes] = mapped_column(LargeBinary)  # float32 (dim,)
    metrics: Mapped[str] = mapped_column(Text)  # JSON: accuracy, macro_f1, confusion, ...
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Change(Base):
    """One committed item add or delete, or a dropped collection, in commit order.

    Written in the same transaction as the change itself (indexer.store.change_log), so a
    replica that applies every row past the last `seq` it applied holds what SQL holds.
    No foreign keys: the row of a dropped collection or deleted item must outlive them."""

    __tablename__ = "change_log"
    __table_args__ = ({"sqlite_autoincrement": True},)

    #: Monotonic and, on PostgreSQL, taken under a transaction-level lock so that seq
    #: order is commit order (see change_log.record).
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    collection_id: Mapped[int] = mapped_column(Integer)
    #: Null for a whole-collection drop.
    item_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    op: Mapped[str] = mapped_column(String(10))  # add | delete | drop
    #: The writing process (a replica's id); a replica skips rows it applied itself.
    origin: Mapped[str] = mapped_column(String(100))
    #: Unix time of the write, by the writer's clock: the age of unapplied rows is the lag.
    written_at: Mapped[float] = mapped_column(Float)


class Thumbnail(Base):
    """An item's thumbnail (indexer.imaging.thumbnail), made at ingest or by a backfill."""

    __tablename__ = "thumbnails"

    item_id: Mapped[int] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE"), primary_key=True
    )
    media_type: Mapped[str] = mapped_column(String(40))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Projection(Base):
    """A cached 2-D projection of one depth's vectors, valid while the collection's version
    is the one it was computed at."""

    __tablename__ = "projections"

    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    depth: Mapped[str] = mapped_column(String(200), primary_key=True)
    method: Mapped[str] = mapped_column(String(20), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    count: Mapped[int] = mapped_column(Integer)
    ids: Mapped[bytes] = mapped_column(LargeBinary)  # int64 little-endian (count,)
    xy: Mapped[bytes] = mapped_column(LargeBinary)  # float32 little-endian (count, 2)
    seconds: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
