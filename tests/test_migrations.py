"""The Alembic migrations: they build exactly the schema of indexer/store/models.py on the
database under test (SQLite or PostgreSQL), run idempotently at every start-up, go down and
up again, adopt a database made before migrations existed, and never reuse item ids."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text

from indexer.store.database import (
    MIGRATIONS_DIR,
    alembic_config,
    create_database_engine,
    create_schema,
)
from indexer.store.models import Base, Collection, Item

HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture
def engine(new_database_url: Callable[[], str]) -> Iterator[Engine]:
    engine = create_database_engine(new_database_url())
    yield engine
    engine.dispose()


def schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def version(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return connection.scalar(text("SELECT version_num FROM alembic_version"))


def test_migrations_build_exactly_the_models_schema(engine: Engine) -> None:
    create_schema(engine)
    assert version(engine) == HEAD
    differences = schema_differences(engine)
    assert differences == [], (
        "indexer/store/models.py and the migrations disagree; add a revision with "
        "`alembic -c indexer/store/migrations/alembic.ini revision --autogenerate -m ...`: "
        f"{differences}"
    )


def test_start_up_migration_is_idempotent(engine: Engine) -> None:
    create_schema(engine)
    with engine.begin() as connection:
        connection.execute(
            Collection.__table__.insert().values(name="kept", backbone="b", pooling="avg")
        )
    create_schema(engine)
    create_schema(engine)
    assert version(engine) == HEAD
    with engine.connect() as connection:
        assert connection.scalars(select(Collection.name)).all() == ["kept"]


def test_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    create_schema(engine)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    create_schema(engine)
    assert version(engine) == HEAD
    assert schema_differences(engine) == []


def test_a_database_from_before_migrations_is_adopted(engine: Engine) -> None:
    Base.metadata.create_all(engine)  # how the schema was made before Alembic
    with engine.begin() as connection:
        connection.execute(
            Collection.__table__.insert().values(name="old", backbone="b", pooling="avg")
        )
    create_schema(engine)
    assert version(engine) == HEAD
    with engine.connect() as connection:
        assert connection.scalars(select(Collection.name)).all() == ["old"]


def test_collections_from_revision_0001_keep_the_centre_crop_they_were_made_with(
    engine: Engine,
) -> None:
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(
            text(
                "INSERT INTO collections (name, backbone, pooling, created_at) "
                "VALUES ('old', 'b', 'avg', CURRENT_TIMESTAMP)"
            )
        )
    create_schema(engine)
    assert version(engine) == HEAD
    with engine.connect() as connection:
        assert connection.execute(select(Collection.name, Collection.framing)).all() == [
            ("old", "center-crop")
        ]


def test_item_ids_are_never_reused(engine: Engine) -> None:
    """A FAISS file saved before a delete may still hold the deleted id; a new item taking
    that id would be served with the old vector. SQLite needs AUTOINCREMENT for this."""
    create_schema(engine)
    with engine.begin() as connection:
        collection_id = connection.execute(
            Collection.__table__.insert().values(name="ids", backbone="b", pooling="avg")
        ).inserted_primary_key[0]
        row = {"collection_id": collection_id, "content_hash": "h", "width": 1, "height": 1}
        first = connection.execute(
            Item.__table__.insert().values(uri="a", **row)
        ).inserted_primary_key[0]
        connection.execute(Item.__table__.delete().where(Item.id == first))
        second = connection.execute(
            Item.__table__.insert().values(uri="b", **row)
        ).inserted_primary_key[0]
    assert second > first


def test_migration_files_ship_as_package_data() -> None:
    root = Path(__file__).resolve().parent.parent
    config = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["indexer"]
    package = root / "indexer"
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    needed = {MIGRATIONS_DIR / "alembic.ini", MIGRATIONS_DIR / "env.py"}
    needed |= set((MIGRATIONS_DIR / "versions").glob("*.py"))
    needed.add(MIGRATIONS_DIR / "script.py.mako")
    assert needed <= shipped, needed - shipped
