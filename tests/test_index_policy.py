"""The FAISS index kind follows a collection's size: exact Flat below the threshold, IVF
trained on the collection's own vectors above it (recall against brute force on seeded,
clustered data), retrained as it grows, with removals, filters, persistence, reconciling
with SQL, rebuilding from SQL, writes during a background rebuild and the device copy."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import faiss
import numpy as np
import pytest
from helpers import exact_neighbours, recall
from sqlalchemy.orm import Session, sessionmaker

from indexer.core.settings import Settings, SettingsError
from indexer.store import repository, vector_index
from indexer.store.database import create_database_engine, create_schema, make_session_factory
from indexer.store.faiss_device import device_copier
from indexer.store.index_files import manifest_path
from indexer.store.index_manager import IndexManager
from indexer.store.index_policy import (
    FLAT,
    IVF,
    IndexPolicy,
    leave_one_out_recall,
    nprobe_candidates,
)
from indexer.store.vector_index import VectorIndex

DIM = 64
THRESHOLD = 2_000


def clustered(rng: np.random.Generator, count: int, centers: np.ndarray) -> np.ndarray:
    """Unit vectors from a Gaussian mixture around `centers` (like image embeddings, they
    come in groups; uniform random vectors make ANN look artificially hard)."""
    labels = rng.integers(len(centers), size=count)
    points = centers[labels] + 0.35 * rng.standard_normal((count, DIM))
    points = points.astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, vectors, held-out queries): 4,000 clustered unit vectors, sparse int64 ids."""
    rng = np.random.default_rng(20240611)
    centers = rng.standard_normal((50, DIM)) / np.sqrt(DIM)
    ids = np.sort(rng.choice(10**9, size=4_000, replace=False)).astype(np.int64)
    return ids, clustered(rng, len(ids), centers), clustered(rng, 200, centers)


def policy(**overrides: object) -> IndexPolicy:
    values: dict = {"flat_max_vectors": THRESHOLD, "background": False}
    values.update(overrides)
    return IndexPolicy(**values)


def fill(index: VectorIndex, ids: np.ndarray, vectors: np.ndarray, chunk: int = 500) -> None:
    for start in range(0, len(ids), chunk):
        index.add(ids[start : start + chunk], vectors[start : start + chunk])


# -- the policy itself ----------------------------------------------------------------------


def test_policy_kinds_lists_and_retraining() -> None:
    p = policy()
    assert p.kind_for(THRESHOLD) == FLAT and p.kind_for(THRESHOLD + 1) == IVF
    # Hysteresis: an IVF index goes back to Flat only below half the threshold.
    assert p.kind_for(THRESHOLD, IVF) == IVF and p.kind_for(THRESHOLD // 2, IVF) == FLAT
    assert [p.lists_for(n) for n in (2_500, 10_000, 1_000_000)] == [64, 128, 1024]
    assert not p.wants_rebuild(IVF, 3_999, 2_000) and p.wants_rebuild(IVF, 4_000, 2_000)
    assert p.wants_rebuild(FLAT, THRESHOLD + 1, 0) and not p.wants_rebuild(FLAT, THRESHOLD, 0)
    assert nprobe_candidates(16) == [1, 2, 3, 4, 6, 8, 12, 16]
    with pytest.raises(SettingsError, match="index_retrain_growth"):
        IndexPolicy(retrain_growth=1.0)
    with pytest.raises(SettingsError, match="index_target_recall"):
        IndexPolicy(target_recall=1.5)
    settings = Settings.load(env={"STRATA_INDEX_FLAT_MAX_VECTORS": "1234"})
    assert IndexPolicy.from_settings(settings).flat_max_vectors == 1234


def test_leave_one_out_recall_ignores_the_query_itself() -> None:
    exact = np.array([[7, 1, 2, 3], [8, 4, 5, 6]])
    found = np.array([[7, 1, 2, 9], [4, 5, 6, -1]])
    # Row 0: {1, 2} of {1, 2, 3}; row 1 (own id 8 missing from found): {4, 5, 6} of them.
    assert leave_one_out_recall(found, exact, np.array([7, 8]), 3) == pytest.approx(5 / 6)


# -- Flat below the threshold, IVF above ------------------------------------------------------


def test_flat_up_to_threshold_is_exact(data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    index = VectorIndex(DIM, policy=policy())
    fill(index, ids[:THRESHOLD], vectors[:THRESHOLD])
    assert index.kind == FLAT and index.ntotal == THRESHOLD
    _, found = index.search(queries, 10)
    np.testing.assert_array_equal(
        found, exact_neighbours(ids[:THRESHOLD], vectors[:THRESHOLD], queries, 10)[1]
    )


def test_switches_to_ivf_past_threshold_and_keeps_recall(data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    index = VectorIndex(DIM, policy=policy())
    fill(index, ids, vectors)
    assert index.kind == IVF and index.ntotal == len(ids)
    np.testing.assert_array_equal(np.sort(index.ids()), ids)
    # Trained at 2,500 (the first add past 2,000), so not yet retrained at 4,000 < 5,000.
    assert index.built.vectors == 2_500 and index.rebuilds_done == 1
    assert 1 <= index.nprobe < index.built.lists, "calibrated below an exhaustive scan"
    assert index.built.recall >= 0.95
    _, found = index.search(queries, 10)
    assert recall(found, exact_neighbours(ids, vectors, queries, 10)[1]) >= 0.9
    # A stored vector still finds itself first.
    _, own = index.search(vectors[:50], 1)
    np.testing.assert_array_equal(own[:, 0], ids[:50])


def test_retrains_when_it_doubles(data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    index = VectorIndex(DIM, policy=policy(flat_max_vectors=900))
    fill(index, ids, vectors)
    # Flat -> IVF at 1,000, retrained at 2,000 and 4,000 (each the first add that doubled it).
    assert index.rebuilds_done == 3 and index.built.vectors == 4_000
    assert index.built.lists == policy().lists_for(4_000)
    _, found = index.search(queries, 10)
    assert recall(found, exact_neighbours(ids, vectors, queries, 10)[1]) >= 0.9


def test_ivf_remove_filter_and_large_k(data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    index = VectorIndex(DIM, policy=policy())
    fill(index, ids, vectors)
    assert index.kind == IVF
    gone = np.arange(0, len(ids), 4)
    assert index.remove(ids[gone]) == len(gone)
    assert index.remove(ids[gone]) == 0
    keep = np.setdiff1d(np.arange(len(ids)), gone)
    assert index.ntotal == len(keep)
    _, found = index.search(vectors[gone[:50]], 10)
    assert not np.isin(found, ids[gone]).any(), "removed vectors are never found"
    _, found = index.search(queries, 10)
    assert recall(found, exact_neighbours(ids[keep], vectors[keep], queries, 10)[1]) >= 0.9

    # A selective filter widens nprobe until the allowed items are all scanned: exact.
    rng = np.random.default_rng(3)
    chosen = np.sort(rng.choice(keep, size=7, replace=False))
    scores, found = index.search(queries, 5, ids[chosen])
    np.testing.assert_array_equal(
        found, exact_neighbours(ids[chosen], vectors[chosen], queries, 5)[1]
    )
    assert np.isfinite(scores).all()
    # k beyond what nprobe cells hold: still k answers, empty slots only past ntotal.
    _, found = index.search(queries[:3], 1000)
    assert (found >= 0).all()
    _, few = index.search(queries[:2], 10, np.array([ids[keep[0]]]))
    assert few[0, 0] == ids[keep[0]] and (few[:, 1:] == -1).all()


def test_back_to_flat_when_it_shrinks(data: tuple[np.ndarray, ...]) -> None:
    """Without SQL to re-read, Flat is rebuilt from the IVF's fp16 copies: near-exact."""
    ids, vectors, queries = data
    index = VectorIndex(DIM, policy=policy())
    fill(index, ids[:3_000], vectors[:3_000])
    assert index.kind == IVF
    index.remove(ids[900:3_000])
    assert index.kind == FLAT and index.ntotal == 900
    np.testing.assert_array_equal(np.sort(index.ids()), ids[:900])
    scores, found = index.search(queries, 10)
    assert recall(found, exact_neighbours(ids[:900], vectors[:900], queries, 10)[1]) >= 0.98
    np.testing.assert_allclose(
        scores, np.sort(queries @ vectors[:900].T, axis=1)[:, ::-1][:, :10], atol=2e-3
    )


# -- persistence, SQL reconcile and rebuild ---------------------------------------------------


def test_ivf_save_load_round_trip(tmp_path: Path, data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    index = VectorIndex(DIM, policy=policy())
    fill(index, ids, vectors)
    index.remove(ids[:10])
    path = tmp_path / "3" / "semantics.faiss"
    manifest = index.save(path)
    assert manifest.kind == IVF and manifest.built.nprobe == index.nprobe
    assert manifest.built.vectors == index.built.vectors and manifest.built.lists > 0
    loaded = VectorIndex.load(path, DIM, policy=policy())
    assert loaded.kind == IVF and loaded.nprobe == index.nprobe
    assert loaded.built.vectors == index.built.vectors
    np.testing.assert_array_equal(np.sort(loaded.ids()), ids[10:])
    for k in (1, 10):
        np.testing.assert_array_equal(loaded.search(queries, k)[1], index.search(queries, k)[1])
    assert not loaded.needs_rebuild()


@pytest.fixture
def sessions(new_database_url: Callable[[], str]) -> Iterator[sessionmaker[Session]]:
    """A fresh database of the kind under test (SQLite, or PostgreSQL in CI's second run)."""
    engine = create_database_engine(new_database_url())
    create_schema(engine)
    yield make_session_factory(engine)
    engine.dispose()


def _store(
    sessions: sessionmaker[Session], vectors: np.ndarray, first: int = 0
) -> tuple[int, np.ndarray]:
    """A collection holding `vectors` at depth "semantics"; (collection id, item ids)."""
    with sessions.begin() as session:
        collection = repository.create_collection(
            session,
            f"c{first}",
            "efficientnet_lite0",
            "avg",
            [repository.DepthSpec("semantics", "global_pool", DIM)],
        )
        new = [
            repository.NewItem(f"{first + row}.jpg", str(row), 1, 1) for row in range(len(vectors))
        ]
        item_ids = repository.insert_items(session, collection.id, new)
        repository.insert_vectors(
            session, [(i, "semantics", v) for i, v in zip(item_ids, vectors, strict=True)]
        )
        return collection.id, np.array(item_ids, dtype=np.int64)


def test_manager_rebuilds_ivf_from_sql_and_reconciles(
    tmp_path: Path, sessions: sessionmaker[Session], data: tuple[np.ndarray, ...]
) -> None:
    _, vectors, queries = data
    count = 1_300
    collection_id, item_ids = _store(sessions, vectors[:count])
    root = tmp_path / "indexes"
    policy_ = policy(flat_max_vectors=1_000)

    first = IndexManager(root, sessions, policy_)
    index = first.get(collection_id, "semantics", DIM)
    assert first.rebuilds == 1 and index.kind == IVF  # no file yet: built straight from SQL
    np.testing.assert_array_equal(np.sort(index.ids()), item_ids)
    _, found = index.search(queries, 10)
    assert recall(found, exact_neighbours(item_ids, vectors[:count], queries, 10)[1]) >= 0.9
    path = first.path_for(collection_id, "semantics")
    assert path.is_file() and manifest_path(path).is_file()

    # SQL moves on behind the saved file: 20 items deleted.
    deleted = item_ids[:20]
    with sessions.begin() as session:
        repository.delete_items(session, collection_id, deleted.tolist())
    second = IndexManager(root, sessions, policy_)
    reconciled = second.get(collection_id, "semantics", DIM)
    assert second.rebuilds == 0 and reconciled.kind == IVF
    np.testing.assert_array_equal(np.sort(reconciled.ids()), item_ids[20:])

    # A corrupt file is rebuilt from SQL, as IVF again.
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    third = IndexManager(root, sessions, policy_)
    rebuilt = third.get(collection_id, "semantics", DIM)
    assert third.rebuilds == 1 and rebuilt.kind == IVF
    np.testing.assert_array_equal(np.sort(rebuilt.ids()), item_ids[20:])

    # Shrunk below half the threshold: back to Flat, re-read exactly from SQL.
    gone = item_ids[20:900]
    with sessions.begin() as session:
        repository.delete_items(session, collection_id, gone.tolist())
    third.remove_items(collection_id, gone)
    assert rebuilt.kind == FLAT and rebuilt.ntotal == count - 900
    _, found = rebuilt.search(queries, 10)
    np.testing.assert_array_equal(
        found, exact_neighbours(item_ids[900:], vectors[900:count], queries, 10)[1]
    )


# -- writes during a rebuild, and the device copy ---------------------------------------------


class WritesDuringSnapshot(VectorIndex):
    """Writes from inside the rebuild's read of the live index, after the first chunk of
    pass `write_on_pass` (IVF reads twice: 1 samples, 2 adds), as a concurrent ingest or
    delete would land at that moment."""

    writes: list[tuple[str, np.ndarray, np.ndarray | None]]
    write_on_pass: int
    passes = 0

    def _snapshot(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        self.passes += 1
        for number, chunk in enumerate(super()._snapshot()):
            yield chunk
            if number == 0 and self.passes == self.write_on_pass:
                for op, ids, vectors in self.writes:
                    if op == "add":
                        assert vectors is not None
                        self.add(ids, vectors)
                    else:
                        self.remove(ids)


@pytest.mark.parametrize("write_on_pass", [1, 2])
def test_writes_during_a_rebuild_are_replayed(
    data: tuple[np.ndarray, ...], monkeypatch: pytest.MonkeyPatch, write_on_pass: int
) -> None:
    ids, vectors, _ = data
    # Several snapshot chunks, so removals compact Flat under the reading cursor.
    monkeypatch.setattr(vector_index, "SNAPSHOT_CHUNK", 300)
    index = WritesDuringSnapshot(DIM, policy=policy(flat_max_vectors=1_000))
    index.write_on_pass = write_on_pass
    fill(index, ids[:900], vectors[:900])
    assert index.kind == FLAT
    # Removed: some already read (first chunk), some not; added: new ids, and a replaced one.
    removed = np.concatenate([ids[:5], ids[895:900], ids[1_000:1_010]])
    replaced = vectors[3_000]
    index.writes = [
        ("add", ids[1_000:1_400], vectors[1_000:1_400]),
        ("remove", removed, None),
        ("add", ids[6:7], replaced[None, :]),
    ]
    index.add(ids[900:1_001], vectors[900:1_001])  # crosses 1,000: rebuilds (inline policy)
    assert index.kind == IVF and index.rebuilds_done == 1 and index.passes == 2
    np.testing.assert_array_equal(np.sort(index.ids()), np.setdiff1d(ids[:1_400], removed))
    scores, found = index.search(replaced[None, :], 1)
    assert found[0, 0] == ids[6] and scores[0, 0] == pytest.approx(1.0, abs=1e-3)


def test_background_rebuild_does_not_stop_searches(data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    index = VectorIndex(DIM, policy=policy(background=True))
    stop = threading.Event()
    answered = []

    def searcher() -> None:
        while not stop.is_set():
            answered.append(index.search(queries[:1], 5)[1])

    thread = threading.Thread(target=searcher)
    thread.start()
    try:
        fill(index, ids, vectors, chunk=250)
        index.wait_for_rebuild(60)
        while index.needs_rebuild():  # writes may have outrun the rebuild that was running
            index.maybe_rebuild()
            index.wait_for_rebuild(60)
    finally:
        stop.set()
        thread.join(10)
    assert index.kind == IVF and answered
    np.testing.assert_array_equal(np.sort(index.ids()), ids)
    _, found = index.search(queries, 10)
    assert recall(found, exact_neighbours(ids, vectors, queries, 10)[1]) >= 0.9


@pytest.mark.parametrize("kind", [FLAT, IVF])
def test_device_copy_follows_writes(data: tuple[np.ndarray, ...], kind: str) -> None:
    """The GPU path on a CPU: searches go to a copy made by `to_device` (faiss.clone_index
    here, faiss.index_cpu_to_gpu on a GPU), refreshed after every write."""
    ids, vectors, queries = data
    count = 1_000 if kind == FLAT else 3_000
    copies = []

    def to_device(index: faiss.Index) -> faiss.Index:
        copies.append(index)
        return faiss.clone_index(index)

    on_device = VectorIndex(DIM, policy=policy(), to_device=to_device)
    on_cpu = VectorIndex(DIM, policy=policy())
    for index in (on_device, on_cpu):
        fill(index, ids[:count], vectors[:count])
    assert on_device.kind == kind
    for _ in range(2):
        np.testing.assert_array_equal(
            on_device.search(queries, 10)[1], on_cpu.search(queries, 10)[1]
        )
    assert len(copies) == 1, "copied once, reused while nothing changed"
    for index in (on_device, on_cpu):  # adds go to the copy as well: no new copy
        index.add(ids[count + 10 : count + 20], vectors[count + 10 : count + 20])
    np.testing.assert_array_equal(on_device.search(queries, 10)[1], on_cpu.search(queries, 10)[1])
    _, own = on_device.search(vectors[count + 10 : count + 20], 1)
    np.testing.assert_array_equal(own[:, 0], ids[count + 10 : count + 20])
    assert len(copies) == 1
    for index in (on_device, on_cpu):  # a removal: copied again at the next search
        index.remove(ids[:100])
        index.add(ids[count : count + 10], vectors[count : count + 10])
    np.testing.assert_array_equal(on_device.search(queries, 10)[1], on_cpu.search(queries, 10)[1])
    assert len(copies) == 2
    # Filtered searches run on the CPU index (FAISS GPU indexes take no id selector).
    on_device.search(queries, 5, ids[200:300])
    assert len(copies) == 2


def test_device_setting_cpu_means_no_copy() -> None:
    assert device_copier("cpu") is None
    if faiss.get_num_gpus() == 0:
        assert device_copier("auto") is None and device_copier("cuda") is None


@pytest.mark.gpu
def test_gpu_copy_agrees_with_cpu(data: tuple[np.ndarray, ...]) -> None:
    ids, vectors, queries = data
    to_gpu = device_copier("cuda")
    if to_gpu is None:
        pytest.skip("this FAISS build has no GPU support")
    for count in (1_000, 4_000):  # Flat, then IVF
        on_gpu = VectorIndex(DIM, policy=policy(), to_device=to_gpu)
        on_cpu = VectorIndex(DIM, policy=policy())
        for index in (on_gpu, on_cpu):
            fill(index, ids[:count], vectors[:count])
        _, gpu_found = on_gpu.search(queries, 10)
        _, cpu_found = on_cpu.search(queries, 10)
        assert recall(gpu_found, cpu_found) >= 0.99
