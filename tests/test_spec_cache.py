"""Searches work from a cached collection spec (indexer/catalog/spec_cache.py). Another
process may delete the collection and create a new one under the same name, with other
depths and a new id: the next search of this process must find the new one, never the old
spec, and a search of a collection deleted elsewhere is NOT_FOUND. Two library contexts over
one database stand for two servers over it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from indexer.catalog.collections import create_collection, delete_collection, get_collection
from indexer.catalog.context import Context
from indexer.catalog.ingest import ImageInput, add_images
from indexer.catalog.search import Query, search
from indexer.catalog.spec_cache import SpecCache
from indexer.core.errors import NotFound
from indexer.core.settings import Settings
from indexer.store.database import collection_ids_never_reused, create_database_engine
from tests.photos import photo_jpeg

NAME = "spec-cache"


@pytest.fixture(scope="module")
def contexts(
    tmp_path_factory: pytest.TempPathFactory, new_database_url: Callable[[], str]
) -> Iterator[tuple[Context, Context]]:
    """Two servers' contexts over one database of the kind under test, each with its own
    index folder."""
    data, url = Path(tmp_path_factory.mktemp("spec-cache")), new_database_url()
    first, second = (
        Context.open(Settings.load(env={}, data_dir=data / n, device="cpu", database_url=url))
        for n in "ab"
    )
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _add(ctx: Context, name: str) -> int:
    [added] = add_images(ctx, NAME, [ImageInput(f"{name}.jpg", photo_jpeg(name))])
    assert added.item_id is not None, added
    return added.item_id


def test_search_follows_a_collection_recreated_elsewhere(
    contexts: tuple[Context, Context],
) -> None:
    here, elsewhere = contexts
    first_id = create_collection(here, NAME, depths=["semantics"]).id
    cat = _add(here, "chelsea")
    [result] = search(here, NAME, [Query("q", image=photo_jpeg("chelsea"))])
    assert [h.id for h in result.results["semantics"]] == [cat]
    assert here.specs.get(NAME) is not None  # the spec is cached now
    here.indexes.save_dirty()
    first_files = here.indexes.root / str(first_id)
    assert first_files.is_dir()

    delete_collection(elsewhere, NAME)
    create_collection(elsewhere, NAME, depths=["edges", "semantics"])
    coffee = _add(elsewhere, "coffee")

    # A depth only the new collection has, and the default depths: both the new collection.
    [by_edges] = search(here, NAME, [Query("q", image=photo_jpeg("coffee"))], depths=["edges"])
    assert [h.id for h in by_edges.results["edges"]] == [coffee]
    assert not first_files.exists()  # the dead collection's index files went with its spec
    [by_all] = search(here, NAME, [Query("q", image=photo_jpeg("coffee"))])
    assert {d: [h.id for h in hits] for d, hits in by_all.results.items()} == {
        "edges": [coffee],
        "semantics": [coffee],
    }

    # Created again with the same depths: only the hits' statement can tell.
    delete_collection(elsewhere, NAME)
    create_collection(elsewhere, NAME, depths=["edges", "semantics"])
    rocket = _add(elsewhere, "rocket")
    [again] = search(here, NAME, [Query("q", image=photo_jpeg("rocket"))])
    assert {d: [h.id for h in hits] for d, hits in again.results.items()} == {
        "edges": [rocket],
        "semantics": [rocket],
    }
    cached = here.specs.get(NAME)
    assert cached is not None and cached.id == get_collection(elsewhere, NAME).id

    delete_collection(elsewhere, NAME)
    with pytest.raises(NotFound, match=NAME):
        search(here, NAME, [Query("q", image=photo_jpeg("coffee"))])
    assert here.specs.get(NAME) is None


def test_search_by_an_item_of_another_collection_is_not_found(
    contexts: tuple[Context, Context],
) -> None:
    here, _ = contexts
    create_collection(here, "spec-cache-a", depths=["semantics"])
    create_collection(here, "spec-cache-b", depths=["semantics"])
    [added] = add_images(here, "spec-cache-a", [ImageInput("cat.jpg", photo_jpeg("chelsea"))])
    assert added.item_id is not None
    [found] = search(here, "spec-cache-a", [Query("q", item_id=added.item_id)])
    assert [h.id for h in found.results["semantics"]] == [added.item_id]
    with pytest.raises(NotFound, match=f"item {added.item_id} does not exist"):
        search(here, "spec-cache-b", [Query("q", item_id=added.item_id)])


@pytest.mark.database_free  # its own SQLite files in both passes' place
def test_the_cache_is_off_where_collection_ids_can_come_back(tmp_path: Path) -> None:
    """A SQLite store made before migrations keeps plain rowids: a new collection may get
    the id of a deleted one, so an id that exists proves nothing about a cached spec."""
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as connection:
        connection.execute("CREATE TABLE collections (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO collections (name) VALUES ('a')")
        connection.execute("DELETE FROM collections")
        connection.execute("INSERT INTO collections (name) VALUES ('b')")
        [(reused,)] = connection.execute("SELECT id FROM collections").fetchall()
    assert reused == 1  # the deleted row's id, given out again
    assert not collection_ids_never_reused(create_database_engine(f"sqlite:///{old}"))

    current = Context.open(Settings.load(env={}, data_dir=tmp_path / "new", device="cpu"))
    try:
        assert collection_ids_never_reused(current.engine)
        assert current.specs.enabled
    finally:
        current.close()
    disabled: SpecCache[int] = SpecCache(enabled=False)
    disabled.put("x", 1)
    assert disabled.get("x") is None
