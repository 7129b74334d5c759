"""initial schema: every table of indexer/store/models.py

Item and collection ids are never reused (SQLite AUTOINCREMENT; PostgreSQL sequences
never go back): a FAISS file saved before a delete must not pair an old vector with a new
item that took the same id.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("backbone", sa.String(length=100), nullable=False),
        sa.Column("pooling", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "collection_depths",
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("layer", sa.String(length=200), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("collection_id", "name"),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("collection_id", "uri", name="uq_items_collection_uri"),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_items_collection_id"), "items", ["collection_id"], unique=False)
    op.create_index(op.f("ix_items_content_hash"), "items", ["content_hash"], unique=False)
    op.create_table(
        "probes",
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("depth", sa.String(length=200), nullable=False),
        sa.Column("classes", sa.Text(), nullable=False),
        sa.Column("weight", sa.LargeBinary(), nullable=False),
        sa.Column("bias", sa.LargeBinary(), nullable=False),
        sa.Column("mean", sa.LargeBinary(), nullable=False),
        sa.Column("scale", sa.LargeBinary(), nullable=False),
        sa.Column("metrics", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["collection_id"], ["collections.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("collection_id", "depth"),
    )
    op.create_table(
        "item_metadata",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("item_id", "key"),
    )
    op.create_table(
        "labels",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("item_id", "label"),
    )
    op.create_index(op.f("ix_labels_label"), "labels", ["label"], unique=False)
    op.create_table(
        "vectors",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("depth", sa.String(length=200), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("item_id", "depth"),
    )


def downgrade() -> None:
    op.drop_table("vectors")
    op.drop_index(op.f("ix_labels_label"), table_name="labels")
    op.drop_table("labels")
    op.drop_table("item_metadata")
    op.drop_table("probes")
    op.drop_index(op.f("ix_items_content_hash"), table_name="items")
    op.drop_index(op.f("ix_items_collection_id"), table_name="items")
    op.drop_table("items")
    op.drop_table("collection_depths")
    op.drop_table("collections")
