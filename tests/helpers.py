"""What several test modules need: free ports, cosines, exact ground truth and recall through
faiss.contrib, and polling on observable state instead of sleeping."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import faiss
import numpy as np
from faiss.contrib.evaluation import knn_intersection_measure
from faiss.contrib.exhaustive_search import knn_ground_truth

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cosine(a: Any, b: Any) -> float:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def exact_neighbours(
    ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of the k best inner products, by FAISS's exhaustive search."""
    k = min(k, len(ids))
    scores, rows = knn_ground_truth(
        np.ascontiguousarray(queries, dtype=np.float32),
        iter([np.ascontiguousarray(vectors, dtype=np.float32)]),
        k,
        metric_type=faiss.METRIC_INNER_PRODUCT,
    )
    return scores, ids[rows]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the true neighbours found (recall@k for equal k)."""
    return float(knn_intersection_measure(np.asarray(found), np.asarray(truth)))


def wait_for(
    probe: Callable[[], T],
    ok: Callable[[T], bool],
    timeout: float = 30.0,
    what: str = "the condition",
    every: float = 0.05,
) -> T:
    """Poll `probe` until `ok` holds for its value; fail with the last value at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout:.0f} s (last: {value!r})")
        time.sleep(every)


def settled(probe: Callable[[], T], quiet: float = 1.5, timeout: float = 60.0) -> T:
    """The value of `probe` once it has stopped changing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    value, since = probe(), time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"still changing after {timeout:.0f} s (last: {value!r})")
        time.sleep(0.1)
        latest = probe()
        if latest != value:
            value, since = latest, time.monotonic()
    return value
