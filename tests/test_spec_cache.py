"""Searches work from a cached collection spec (indexer/catalog/spec_cache.py). Another
process may delete the collection and create a new one under the same name, with other
depths and a new id: the next search of this process must find the new one, never the old
spec, and a search of a collection deleted elsewhere is NOT_FOUND. Two library contexts over
one SQLite store stand for two servers over one database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.catalog.collections import create_collection, delete_collection
from indexer.catalog.context import Context
from indexer.catalog.ingest import ImageInput, add_images
from indexer.catalog.search import Query, search
from indexer.core.errors import NotFound
from indexer.core.settings import Settings
from tests.photos import photo_jpeg

pytestmark = pytest.mark.database_free  # its own SQLite store in both passes' place

NAME = "spec-cache"


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Context, Context]]:
    data = Path(tmp_path_factory.mktemp("spec-cache"))
    first = Context.open(Settings.load(env={}, data_dir=data / "a", device="cpu"))
    # The same database, its own index folder: a second server over the same SQL.
    url = first.settings.resolved_database_url
    second = Context.open(
        Settings.load(env={}, data_dir=data / "b", device="cpu", database_url=url)
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

    delete_collection(elsewhere, NAME)
    with pytest.raises(NotFound, match=NAME):
        search(here, NAME, [Query("q", image=photo_jpeg("coffee"))])
    assert here.specs.get(NAME) is None
