"""Periodic saves are throttled by what a save costs: an index whose last save was slow is
saved less often (never at shutdown: that saves everything), and it stays dirty meanwhile."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.catalog.collections import create_collection
from indexer.catalog.context import Context
from indexer.core.settings import Settings
from indexer.store.index_manager import SAVE_DUTY


@pytest.fixture
def ctx(tmp_path: Path, new_database_url: Callable[[], str]) -> Iterator[Context]:
    settings = Settings.load(
        env={}, data_dir=tmp_path / "data", database_url=new_database_url(), device="cpu"
    )
    context = Context.open(settings)
    yield context
    context.close()


def _vectors(count: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_slow_saving_index_waits_its_turn_and_shutdown_saves_it(ctx: Context) -> None:
    info = create_collection(ctx, "saves", depths=["semantics"])
    key = (info.id, "semantics")
    index = ctx.indexes.get(info.id, "semantics", 1280)
    index.add(np.arange(1, 5, dtype=np.int64), _vectors(4, 1280, 0))
    assert ctx.indexes.save_dirty(throttled=True) == 1  # never saved: no cost known yet
    saved_at, seconds = ctx.indexes.last_saves[key]
    assert 0 < seconds < 60 and saved_at <= time.monotonic()

    index.add(np.arange(5, 7, dtype=np.int64), _vectors(2, 1280, 1))
    # As if that save had taken 10 minutes: the next periodic one waits SAVE_DUTY times that.
    ctx.indexes.last_saves[key] = (time.monotonic(), 600.0)
    assert ctx.indexes.save_dirty(throttled=True) == 0 and index.dirty
    ctx.indexes.last_saves[key] = (time.monotonic() - SAVE_DUTY * 600.0 - 1, 600.0)
    assert ctx.indexes.save_dirty(throttled=True) == 1 and not index.dirty

    index.add(np.arange(7, 8, dtype=np.int64), _vectors(1, 1280, 2))
    ctx.indexes.last_saves[key] = (time.monotonic(), 600.0)
    assert ctx.indexes.save_dirty() == 1 and not index.dirty  # shutdown: unthrottled


def test_an_index_loaded_from_its_file_is_throttled_by_what_loading_it_cost(
    tmp_path: Path, new_database_url: Callable[[], str]
) -> None:
    settings = Settings.load(
        env={}, data_dir=tmp_path / "data", database_url=new_database_url(), device="cpu"
    )
    first = Context.open(settings)
    info = create_collection(first, "loaded", depths=["semantics"])
    first.indexes.get(info.id, "semantics", 1280).add(
        np.arange(1, 4, dtype=np.int64), _vectors(3, 1280, 3)
    )
    first.close()  # saves the file
    again = Context.open(settings)
    try:
        again.indexes.get(info.id, "semantics", 1280)  # loaded (ids SQL lacks are dropped)
        at, seconds = again.indexes.last_saves[(info.id, "semantics")]
        assert seconds > 0 and at <= time.monotonic()
    finally:
        again.close()
