"""A search's hit details through the driver's connection (indexer/store/hit_reads.py) give
what the session path gives, on the real SQLite and PostgreSQL stores, and on SQLite they
do not wait for another connection's write transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from indexer.catalog import ingest
from indexer.catalog.collections import create_collection, delete_collection
from indexer.catalog.context import Context
from indexer.core.errors import Unavailable
from indexer.core.settings import Settings
from indexer.store import hit_reads, repository


def _open(data_dir: Path, database_url: str | None) -> Context:
    settings = Settings.load(
        env={},
        data_dir=data_dir,
        database_url=database_url,
        device="cpu",
        sqlite_busy_timeout_s=0.5,
    )
    return Context.open(settings)


@pytest.fixture()
def ctx(tmp_path: Path, new_database_url: Callable[[], str]) -> Iterator[Context]:
    """A store of the kind under test (SQLite or PostgreSQL)."""
    context = _open(tmp_path / "data", new_database_url())
    try:
        yield context
    finally:
        context.close()


@pytest.fixture()
def sqlite_ctx(tmp_path: Path) -> Iterator[Context]:
    """The embedded default store, SQLite, whichever database the suite runs against."""
    context = _open(tmp_path / "data", None)
    try:
        yield context
    finally:
        context.close()


def _fill(
    ctx: Context, name: str, images: list[tuple[str, bytes]], labelled: bool
) -> tuple[int, list[int]]:
    collection = create_collection(ctx, name, depths=["edges"])
    inputs = [
        ingest.ImageInput(
            uri,
            data,
            ("zebra", "cat", f"n{n}") if labelled else (),
            {"camera": f"c{n}", "site": "x"} if labelled else {},
        )
        for n, (uri, data) in enumerate(images)
    ]
    ids = [r.item_id for r in ingest.add_images(ctx, name, inputs)]
    assert all(isinstance(i, int) for i in ids), ids
    return collection.id, [int(i) for i in ids if i is not None]


def _through_session(ctx: Context, collection_id: int, ids: list[int]) -> object:
    with ctx.sessions() as session:
        return repository.hit_details(session, collection_id, ids)


def test_hit_details_are_those_of_the_session_path(
    ctx: Context, small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    images = small_jpegs(8, seed=81)
    mine, my_ids = _fill(ctx, "hits-mine", images[:5], labelled=True)
    _, other_ids = _fill(ctx, "hits-other", images[5:], labelled=False)
    asked = [*my_ids, *other_ids, max(other_ids) + 1000]  # another collection's, and none

    through_sqlalchemy: list[str] = []

    def capture(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        through_sqlalchemy.append(sql)

    event.listen(ctx.engine, "before_cursor_execute", capture)
    try:
        got = hit_reads.hit_details(ctx.engine, ctx.sessions, mine, asked)
    finally:
        event.remove(ctx.engine, "before_cursor_execute", capture)

    assert through_sqlalchemy == [], "the lookup fell back to the session path"
    assert got == _through_session(ctx, mine, asked)
    assert got is not None and sorted(got) == sorted(my_ids)  # only this collection's items
    first = got[my_ids[0]]
    assert first == (images[0][0], ("cat", "n0", "zebra"), {"camera": "c0", "site": "x"})
    assert hit_reads.hit_details(ctx.engine, ctx.sessions, mine, []) == {}


def test_a_deleted_collection_has_no_hit_details(
    ctx: Context, small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    gone, ids = _fill(ctx, "hits-gone", small_jpegs(2, seed=82), labelled=False)
    delete_collection(ctx, "hits-gone")
    assert hit_reads.hit_details(ctx.engine, ctx.sessions, gone, ids) is None
    assert _through_session(ctx, gone, ids) is None


@pytest.mark.database_free  # its own SQLite store: run once, in the SQLite pass
def test_hits_are_read_while_another_connection_holds_the_sqlite_write_lock(
    sqlite_ctx: Context, small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    """An ingest's transaction holds SQLite's write lock until its commit; a search reads
    its hits meanwhile instead of waiting (here: failing after the 0.5 s busy timeout, as
    the session path, which begins with BEGIN IMMEDIATE, does). PostgreSQL's readers never
    wait for writers."""
    ctx = sqlite_ctx
    assert ctx.engine.dialect.name == "sqlite"
    collection, ids = _fill(ctx, "hits-locked", small_jpegs(3, seed=83), labelled=True)
    path = ctx.settings.resolved_database_url.split("///", 1)[1]
    writer = sqlite3.connect(path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM labels")  # uncommitted: no reader may see it
        got = hit_reads.hit_details(ctx.engine, ctx.sessions, collection, ids)
        assert got is not None and got[ids[0]][1] == ("cat", "n0", "zebra")
        with pytest.raises(Unavailable):
            _through_session(ctx, collection, ids)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
