"""Choosing what to label next (indexer/learning/selection.py) on a small neighbour graph."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexer.learning.neighbours import NeighbourGraph
from indexer.learning.selection import weighted_coverage

#: No database here: the PostgreSQL pass skips this module (tests/conftest.py).
pytestmark = pytest.mark.database_free


def knn_graph(x: np.ndarray, k: int = 5) -> NeighbourGraph:
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    scores, found = index.search(x, k + 1)
    return NeighbourGraph(found[:, 1:], scores[:, 1:].astype(np.float32))


def three_blobs() -> tuple[np.ndarray, np.ndarray]:
    """60 points in three blobs of 20 (one per class); the first blob is the uncertain one."""
    rng = np.random.default_rng(0)
    centres = np.eye(8, dtype=np.float32)[:3] * 4
    x = np.concatenate([c + rng.normal(size=(20, 8)).astype(np.float32) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, np.repeat(np.arange(3), 20)


def test_picks_are_spread_over_the_predicted_classes() -> None:
    x, predicted = three_blobs()
    graph = knn_graph(x)
    weight = np.where(predicted == 0, 1.0, 0.1).astype(np.float32)
    candidates = np.arange(60)
    labelled = np.array([], dtype=np.int64)
    piled, _ = weighted_coverage(graph, candidates, labelled, weight, 6)
    spread, gains = weighted_coverage(graph, candidates, labelled, weight, 6, predicted)
    # Uncertainty alone piles into the uncertain class; the quota gives each class two.
    assert np.bincount(predicted[piled], minlength=3)[0] >= 4
    assert np.bincount(predicted[spread], minlength=3).tolist() == [2, 2, 2]
    assert len(set(spread)) == 6 and gains == sorted(gains, reverse=True)


def test_the_quota_gives_way_when_a_class_runs_out_of_candidates() -> None:
    x, predicted = three_blobs()
    graph = knn_graph(x)
    candidates = np.concatenate([np.arange(2), np.arange(20, 60)])  # class 0: two left
    weight = np.ones(60, dtype=np.float32)
    picks, _ = weighted_coverage(graph, candidates, np.array([], np.int64), weight, 9, predicted)
    assert len(set(picks)) == 9 and set(picks) <= set(candidates.tolist())
    assert np.bincount(predicted[picks], minlength=3)[0] <= 2
