"""FAISS per (collection, depth): exact search against brute force on seeded data, id
filtering, removal, save/load with integrity checks, and rebuilding/reconciling from SQL
across real server restarts."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import ServerHandle
from helpers import exact_neighbours
from photos import photo_crops, photo_jpeg

from indexer.store.index_files import IndexFileError, manifest_path
from indexer.store.vector_index import VectorIndex
from service.client import ImageToAdd, StrataClient

DIM = 48
PRESETS = ("edges", "parts", "semantics")


def unit_rows(rng: np.random.Generator, count: int, dim: int = DIM) -> np.ndarray:
    matrix = rng.standard_normal((count, dim)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, vectors, queries): 1,500 unit vectors under sparse, shuffled int64 ids."""
    rng = np.random.default_rng(20240611)
    ids = rng.choice(10**9, size=1500, replace=False).astype(np.int64)
    return ids, unit_rows(rng, len(ids)), unit_rows(rng, 25)


def assert_same_results(
    got: tuple[np.ndarray, np.ndarray], expected: tuple[np.ndarray, np.ndarray]
) -> None:
    scores, ids = got
    want_scores, want_ids = expected
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def filled_index(ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
    index = VectorIndex(DIM)
    # Two adds, as ingest batches do.
    index.add(ids[:700], vectors[:700])
    index.add(ids[700:], vectors[700:])
    return index


# -- search ------------------------------------------------------------------------------------


def test_flat_search_equals_exact_neighbours(data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    index = filled_index(ids, vectors)
    assert index.ntotal == len(ids) and index.dirty
    np.testing.assert_array_equal(np.sort(index.ids()), np.sort(ids))
    for k in (1, 10, 57):
        assert_same_results(index.search(queries, k), exact_neighbours(ids, vectors, queries, k))
    # Each stored vector finds itself first with cosine 1.
    scores, found = index.search(vectors[:40], 1)
    np.testing.assert_array_equal(found[:, 0], ids[:40])
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


def test_k_larger_than_index_and_empty_index(data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    small = VectorIndex(DIM)
    small.add(ids[:5], vectors[:5])
    assert_same_results(
        small.search(queries, 50), exact_neighbours(ids[:5], vectors[:5], queries, 5)
    )
    empty = VectorIndex(DIM)
    scores, found = empty.search(queries, 10)
    assert (found == -1).all() and np.isneginf(scores).all()
    empty.add(np.array([], dtype=np.int64), np.zeros((0, DIM), np.float32))
    assert empty.ntotal == 0 and not empty.dirty


def test_id_selector_equals_brute_force_over_allowed(data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    index = filled_index(ids, vectors)
    rng = np.random.default_rng(5)
    for size in (1, 9, 300):
        chosen = np.sort(rng.choice(len(ids), size=size, replace=False))
        allowed = ids[chosen]
        k = 10
        scores, found = index.search(queries, k, allowed)
        want_scores, want_ids = exact_neighbours(allowed, vectors[chosen], queries, min(k, size))
        np.testing.assert_array_equal(found[:, : min(k, size)], want_ids)
        np.testing.assert_allclose(scores[:, : min(k, size)], want_scores, atol=1e-5)
        assert (found[:, min(k, size) :] == -1).all()  # fewer allowed than k: empty slots
        assert np.isin(found[found >= 0], allowed).all()
    # Ids not in the index allow nothing.
    _, nothing = index.search(queries, 5, np.array([-5, 7], dtype=np.int64))
    assert (nothing == -1).all()


def test_remove(data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    index = filled_index(ids, vectors)
    gone = np.arange(0, len(ids), 3)
    assert index.remove(ids[gone]) == len(gone)
    assert index.remove(ids[gone]) == 0  # removing twice removes nothing
    assert index.remove(np.array([], dtype=np.int64)) == 0
    keep = np.setdiff1d(np.arange(len(ids)), gone)
    assert index.ntotal == len(keep)
    assert_same_results(
        index.search(queries, 20), exact_neighbours(ids[keep], vectors[keep], queries, 20)
    )
    # A removed vector is not found even by itself.
    _, found = index.search(vectors[gone[:10]], 5)
    assert not np.isin(found, ids[gone]).any()


# -- persistence -----------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path, data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    index = filled_index(ids, vectors)
    index.remove(ids[:100])
    path = tmp_path / "7" / "semantics.faiss"
    manifest = index.save(path)
    assert not index.dirty
    assert manifest.vectors == len(ids) - 100 and manifest.dim == DIM
    assert manifest.max_item_id == int(ids[100:].max())
    assert json.loads(manifest_path(path).read_text())["checksum"] == manifest.checksum
    assert not list(path.parent.glob(".*.tmp")), "no temporary files left behind"

    loaded = VectorIndex.load(path, DIM)
    assert loaded.ntotal == index.ntotal and not loaded.dirty
    np.testing.assert_array_equal(np.sort(loaded.ids()), np.sort(ids[100:]))
    for k in (1, 10):
        a_scores, a_ids = loaded.search(queries, k)
        b_scores, b_ids = index.search(queries, k)
        np.testing.assert_array_equal(a_ids, b_ids)
        np.testing.assert_array_equal(a_scores, b_scores)
    # The loaded index keeps working: add, remove, filter.
    loaded.add(ids[:100], vectors[:100])
    assert_same_results(loaded.search(queries, 10), exact_neighbours(ids, vectors, queries, 10))


def _flip_byte(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage_with_matching_manifest(path: Path) -> None:
    import hashlib

    blob = b"\x00not a faiss index" * 64
    path.write_bytes(blob)
    manifest = json.loads(manifest_path(path).read_text())
    manifest["checksum"] = hashlib.sha256(blob).hexdigest()
    manifest_path(path).write_text(json.dumps(manifest))


def _bad_manifest_json(path: Path) -> None:
    manifest_path(path).write_text("{not json")


def _manifest_missing_field(path: Path) -> None:
    manifest = json.loads(manifest_path(path).read_text())
    del manifest["checksum"]
    manifest_path(path).write_text(json.dumps(manifest))


def _manifest_count_lies(path: Path) -> None:
    manifest = json.loads(manifest_path(path).read_text())
    manifest["vectors"] += 1
    manifest_path(path).write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    "damage",
    [
        _flip_byte,
        _truncate,
        lambda p: p.write_bytes(b""),
        lambda p: p.unlink(),
        lambda p: manifest_path(p).unlink(),
        _bad_manifest_json,
        _manifest_missing_field,
        _manifest_count_lies,
        _garbage_with_matching_manifest,
    ],
    ids=[
        "flipped-byte",
        "truncated",
        "empty",
        "missing-file",
        "missing-manifest",
        "manifest-not-json",
        "manifest-missing-field",
        "manifest-count-lies",
        "garbage-with-matching-checksum",
    ],
)
def test_damaged_file_is_refused(
    tmp_path: Path, data: tuple[np.ndarray, ...], damage: Callable[[Path], None]
) -> None:
    ids, vectors, _ = data
    path = tmp_path / "edges.faiss"
    filled_index(ids[:200], vectors[:200]).save(path)
    damage(path)
    with pytest.raises(IndexFileError, match=r"edges\.faiss"):
        VectorIndex.load(path, DIM)


def test_wrong_dim_is_refused(tmp_path: Path, data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, _ = data
    path = tmp_path / "parts.faiss"
    filled_index(ids[:50], vectors[:50]).save(path)
    with pytest.raises(IndexFileError, match="dim"):
        VectorIndex.load(path, DIM + 1)


# -- IndexManager across server restarts ---------------------------------------------------------


def _search_top(client: StrataClient, collection: str, images: dict[str, bytes]) -> dict:
    """uri -> depth -> [(id, rounded score)] for the top 3."""
    queries = list(images.values())
    results = client.search(collection, queries, k=3)
    return {
        uri: {d.depth: [(h.id, round(h.score, 4)) for h in d.hits] for d in result.results}
        for uri, result in zip(images, results, strict=True)
    }


def _counts(client: StrataClient, collection: str) -> tuple[int, dict[str, int]]:
    info = client.get_collection(collection)
    return info.items, {d.name: d.vectors for d in info.depths}


def _index_files(handle: ServerHandle, collection_id: int) -> dict[str, Path]:
    root = handle.settings.data_dir / "indexes" / str(collection_id)
    return {depth: root / f"{depth}.faiss" for depth in PRESETS}


def _collection_id(handle: ServerHandle, name: str) -> int:
    from indexer.catalog.collections import get_collection

    return get_collection(handle.running.ctx, name).id


def test_indexes_rebuild_from_sql_when_damaged_or_missing(
    make_server: Callable[..., ServerHandle],
) -> None:
    first = make_server()
    name = f"r-{uuid.uuid4().hex[:8]}"
    images = {uri: data for uri, data in photo_crops(8)}
    images.update({f"{n}.jpg": photo_jpeg(n) for n in ("chelsea", "coffee")})
    with first.client(timeout=300) as client:
        client.create_collection(name)
        results = list(client.add_images(name, (ImageToAdd(u, d) for u, d in images.items())))
        assert all(r.status == "added" for r in results)
        ids = {r.uri: r.id for r in results}
        expected = _search_top(client, name, images)
        counts = _counts(client, name)
    collection_id = _collection_id(first, name)
    first.stop()  # saves every index file

    files = _index_files(first, collection_id)
    assert all(p.is_file() and manifest_path(p).is_file() for p in files.values())
    _flip_byte(files["edges"])
    _truncate(files["parts"])
    files["semantics"].unlink()

    second = make_server(data_dir=first.settings.data_dir, database_url=first.settings.database_url)
    with second.client(timeout=300) as client:
        assert _counts(client, name) == counts
        assert _search_top(client, name, images) == expected
        for uri, item_id in ids.items():
            [result] = client.search(name, [item_id], k=1)
            assert all(d.hits[0].id == item_id for d in result.results), uri
    assert second.running.ctx.indexes.rebuilds == 3
    second.stop()
    # The rebuilt files were saved and load cleanly now.
    for path in files.values():
        assert VectorIndex.load(path, _dim_of(path)).ntotal == len(images)

    # The whole indexes folder gone: rebuilt again, same answers.
    shutil.rmtree(first.settings.data_dir / "indexes")
    third = make_server(data_dir=first.settings.data_dir, database_url=first.settings.database_url)
    with third.client(timeout=300) as client:
        assert _counts(client, name) == counts
        assert _search_top(client, name, images) == expected
    assert third.running.ctx.indexes.rebuilds == 3
    third.stop()


def _dim_of(path: Path) -> int:
    return int(json.loads(manifest_path(path).read_text())["dim"])


def test_stale_index_files_are_reconciled_with_sql(
    make_server: Callable[..., ServerHandle],
) -> None:
    first = make_server()
    name = f"s-{uuid.uuid4().hex[:8]}"
    crops = dict(photo_crops(8))
    with first.client(timeout=300) as client:
        client.create_collection(name)
        before = {
            r.uri: r.id
            for r in client.add_images(name, (ImageToAdd(u, d) for u, d in crops.items()))
        }
    collection_id = _collection_id(first, name)
    first.stop()
    files = _index_files(first, collection_id)
    stale_copy = first.settings.data_dir / "stale-copy"
    stale_copy.mkdir()
    for path in files.values():
        shutil.copy2(path, stale_copy / path.name)
        shutil.copy2(manifest_path(path), stale_copy / manifest_path(path).name)

    # Change SQL behind the saved files' back: two items added, two deleted.
    second = make_server(data_dir=first.settings.data_dir, database_url=first.settings.database_url)
    new_images = {f"{n}.jpg": photo_jpeg(n) for n in ("chelsea", "coffee")}
    deleted = [before[uri] for uri in list(crops)[:2]]
    with second.client(timeout=300) as client:
        added = {
            r.uri: r.id
            for r in client.add_images(name, (ImageToAdd(u, d) for u, d in new_images.items()))
        }
        assert sorted(client.delete_items(name, deleted)) == sorted(deleted)
    second.stop()
    # Put the old (valid, but stale) files back, as after a crash before the next save.
    for path in files.values():
        shutil.copy2(stale_copy / path.name, path)
        shutil.copy2(stale_copy / manifest_path(path).name, manifest_path(path))

    third = make_server(data_dir=first.settings.data_dir, database_url=first.settings.database_url)
    remaining = {uri: i for uri, i in before.items() if i not in deleted} | added
    with third.client(timeout=300) as client:
        items, vectors = _counts(client, name)
        assert items == len(remaining) and vectors == dict.fromkeys(PRESETS, len(remaining))
        for uri, data in new_images.items():  # in SQL, not in the stale files: found
            [result] = client.search(name, [data], k=1)
            for depth in result.results:
                assert depth.hits[0].id == added[uri], depth.depth
                assert depth.hits[0].score == pytest.approx(1.0, abs=1e-4)
        [everything] = client.search(name, [photo_jpeg("coffee")], k=100)
        for depth in everything.results:  # deleted ones never come back
            assert sorted(h.id for h in depth.hits) == sorted(remaining.values()), depth.depth
    indexes = third.running.ctx.indexes
    assert indexes.rebuilds == 0  # reconciled in place, not rebuilt
    for depth in PRESETS:
        index = indexes.get(collection_id, depth, _dim_of(files[depth]))
        assert sorted(index.ids().tolist()) == sorted(remaining.values())
    third.stop()
