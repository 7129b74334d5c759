"""collections.framing: how a collection frames its images ("center-crop" or "whole")

Collections made before this revision keep the ImageNet centre crop they were embedded with.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.add_column(
            sa.Column("framing", sa.String(length=20), server_default="center-crop", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("framing")
