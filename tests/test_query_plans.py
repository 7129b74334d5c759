"""Lookups of items by id must reach them by primary key. Without statistics SQLite picks an
index on collection_id for a plain `collection_id = ? AND id IN (...)`; with 1M items it
took the (collection_id, uri) one and read every item of the collection, and a search's hit
details took 110 ms instead of 2 ms (bench/growth.py). Each statement these functions run
on items is checked with EXPLAIN QUERY PLAN on a real SQLite store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from indexer.catalog.collections import create_collection
from indexer.catalog.context import Context
from indexer.core.errors import NotFound
from indexer.core.settings import Settings
from indexer.store import hit_reads, label_repository, repository, thumbnail_repository

pytestmark = pytest.mark.database_free  # its own SQLite store in both passes' place

IDS = [3, 1, 2]

LOOKUPS: dict[str, Callable[[Session, int], Any]] = {
    "hit_details": lambda s, c: repository.hit_details(s, c, IDS),
    "get_items": lambda s, c: repository.get_items(s, c, IDS),
    "item_uris": lambda s, c: label_repository.item_uris(s, c, IDS),
    "get_thumbnails": lambda s, c: thumbnail_repository.get_thumbnails(s, c, IDS),
    "query_vectors_of_item": lambda s, c: _absent(repository.query_vectors_of_item, s, c, 3),
}


def _absent(lookup: Callable[..., Any], *args: Any) -> None:
    """Run a lookup that raises NotFound for an item the store does not hold."""
    with pytest.raises(NotFound):
        lookup(*args)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Context]:
    data = tmp_path_factory.mktemp("plans")
    context = Context.open(Settings.load(env={}, data_dir=Path(data), device="cpu"))
    try:
        yield context
    finally:
        context.close()


@pytest.mark.parametrize("name", sorted(LOOKUPS))
def test_lookups_by_id_use_the_primary_key(ctx: Context, name: str) -> None:
    assert ctx.engine.dialect.name == "sqlite"
    collection = create_collection(ctx, f"plans-{name}".replace("_", "-"), depths=["semantics"])
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        statements.append((sql, params))

    event.listen(ctx.engine, "before_cursor_execute", capture)
    try:
        with ctx.sessions() as session:
            LOOKUPS[name](session, collection.id)
    finally:
        event.remove(ctx.engine, "before_cursor_execute", capture)

    on_items = [(sql, params) for sql, params in statements if "FROM items" in sql]
    assert on_items, f"{name} ran no query on items: {statements}"
    with ctx.engine.connect() as connection:
        for sql, params in on_items:
            plan = " | ".join(
                row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
            )
            items_steps = [step for step in plan.split(" | ") if " items " in f" {step} "]
            assert items_steps, plan
            for step in items_steps:
                assert "INTEGER PRIMARY KEY" in step, f"{name}: {step} (whole plan: {plan})"


def test_the_search_hits_fixed_statement_uses_the_primary_key(ctx: Context) -> None:
    """indexer/store/hit_reads.py's statement, run on the driver's connection, outside the
    events the test above listens to."""
    collection = create_collection(ctx, "plans-hit-reads", depths=["semantics"])
    with ctx.engine.connect() as connection:
        plan = [
            row[-1]
            for row in connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {hit_reads.SQLITE_HIT_ROWS}", (collection.id, "[3, 1, 2]")
            )
        ]
    items_steps = [step for step in plan if " items " in f" {step} "]
    assert items_steps, plan
    assert all("INTEGER PRIMARY KEY" in step for step in items_steps), plan
