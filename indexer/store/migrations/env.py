"""Alembic environment: migrations run on the connection Strata hands over at start-up, or
on STRATA_DATABASE_URL / sqlalchemy.url when Alembic is run by hand."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from indexer.core.settings import Settings
from indexer.store.models import Base

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: later revisions get copy-and-move batches.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=_url(), target_metadata=Base.metadata, literal_binds=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or Settings.load().resolved_database_url


if context.is_offline_mode():
    run_offline()
elif (shared := config.attributes.get("connection")) is not None:
    run_migrations(shared)
else:
    engine = create_engine(_url())
    with engine.connect() as connection:
        run_migrations(connection)
    engine.dispose()
