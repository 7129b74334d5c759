"""Classifiers over neighbours: weighted kNN among labelled items, and label propagation
over the collection's FAISS k-nearest-neighbour graph (labelled and unlabelled items).

Propagation follows Zhou et al. (2004) as used by Iscen et al. (CVPR 2019): a symmetric
kNN graph with weights s^γ, normalised S = D^-½ W D^-½, and F solving (I − αS) F = Y by
conjugate gradient, with Y's columns normalised by class size. Torch does the arithmetic,
so it runs on the collection's device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from indexer.store.vector_index import VectorIndex

KNN_K = 20
#: Vote weight exp(cos / T), as DINO's kNN evaluation.
KNN_TEMPERATURE = 0.07
GRAPH_K = 10
PROPAGATION_ALPHA = 0.99
SIMILARITY_POWER = 3.0
CG_ITERATIONS = 60
QUERY_CHUNK = 4096
#: Most items `exact_graph` takes: it costs n^2 x dims multiply-adds (20k items of 1,600
#: dims: about 6e11, seconds on two cores); larger collections use a FAISS index's graph.
EXACT_GRAPH_ITEMS = 20_000


@dataclass(frozen=True)
class NeighbourGraph:
    """Row i's neighbours as positions into the same id order (-1 = none) and cosines."""

    neighbours: np.ndarray  # (n, k) int64
    similarities: np.ndarray  # (n, k) float32


def neighbour_graph(
    index: VectorIndex, ids: np.ndarray, matrix: np.ndarray, k: int = GRAPH_K
) -> NeighbourGraph:
    """Each item's k nearest others, searched in the collection's FAISS index. Ids the
    index holds but `ids` lacks (deleted in SQL, not yet in FAISS) are dropped."""
    order = np.argsort(ids)
    sorted_ids = ids[order]
    rows_n, rows_s = [], []
    for start in range(0, len(ids), QUERY_CHUNK):
        scores, found = index.search(matrix[start : start + QUERY_CHUNK], k + 1)
        where = np.clip(np.searchsorted(sorted_ids, found), 0, max(0, len(ids) - 1))
        known = (found >= 0) & (sorted_ids[where] == found) if len(ids) else found < -1
        positions = np.where(known, order[where], -1)
        own = np.arange(start, start + len(found))[:, None]
        positions[positions == own] = -1
        rows_n.append(positions)
        rows_s.append(scores.astype(np.float32))
    neighbours = np.concatenate(rows_n) if rows_n else np.zeros((0, k + 1), np.int64)
    similarities = np.concatenate(rows_s) if rows_s else np.zeros((0, k + 1), np.float32)
    # Keep the k best valid neighbours per row (self and stale ids were marked -1).
    rank = np.argsort(neighbours < 0, axis=1, kind="stable")[:, :k]
    return NeighbourGraph(
        np.take_along_axis(neighbours, rank, axis=1),
        np.take_along_axis(similarities, rank, axis=1),
    )


def exact_graph(x: np.ndarray, device: torch.device, k: int = GRAPH_K) -> NeighbourGraph:
    """Each row's k most similar other rows of `x` (unit rows: cosine), exactly, for
    features no FAISS index holds (several depths combined)."""
    n = len(x)
    k = min(k, max(n - 1, 0))
    neighbours = np.full((n, k), -1, np.int64)
    similarities = np.zeros((n, k), np.float32)
    if k == 0:
        return NeighbourGraph(neighbours, similarities)
    every = torch.as_tensor(x, device=device)
    with torch.inference_mode():
        for start in range(0, n, QUERY_CHUNK):
            sims = every[start : start + QUERY_CHUNK] @ every.T
            rows = torch.arange(len(sims), device=device)
            sims[rows, rows + start] = -torch.inf  # not its own neighbour
            best, found = sims.topk(k, dim=1)
            neighbours[start : start + len(sims)] = found.cpu().numpy()
            similarities[start : start + len(sims)] = best.cpu().numpy()
    return NeighbourGraph(neighbours, similarities)


def knn_probabilities(
    train_x: np.ndarray,
    train_y: np.ndarray,
    query_x: np.ndarray,
    n_classes: int,
    device: torch.device,
    k: int = KNN_K,
) -> np.ndarray:
    """Class probabilities from the k most similar training vectors (cosine, unit vectors),
    each voting exp(cos / T)."""
    out = np.zeros((len(query_x), n_classes), np.float32)
    if len(train_x) == 0 or len(query_x) == 0:
        return out
    train = torch.as_tensor(train_x, device=device)
    labels = torch.as_tensor(train_y, dtype=torch.long, device=device)
    k = min(k, len(train_x))
    with torch.inference_mode():
        for start in range(0, len(query_x), QUERY_CHUNK):
            query = torch.as_tensor(query_x[start : start + QUERY_CHUNK], device=device)
            sims, nearest = (query @ train.T).topk(k, dim=1)
            votes = torch.zeros(len(query), n_classes, device=device)
            votes.scatter_add_(1, labels[nearest], torch.exp((sims - 1.0) / KNN_TEMPERATURE))
            votes /= votes.sum(dim=1, keepdim=True)
            out[start : start + len(query)] = votes.cpu().numpy()
    return out


def propagate(
    graph: NeighbourGraph,
    seeds: np.ndarray,
    seed_labels: np.ndarray,
    n_classes: int,
    device: torch.device,
    alpha: float = PROPAGATION_ALPHA,
) -> np.ndarray:
    """Class probabilities for every node, spreading the seeds' labels over the graph.
    Nodes the seeds cannot reach get a uniform distribution."""
    n = len(graph.neighbours)
    rows = np.repeat(np.arange(n), graph.neighbours.shape[1])
    cols = graph.neighbours.ravel()
    valid = cols >= 0
    weights = np.clip(graph.similarities.ravel()[valid], 0.0, None) ** SIMILARITY_POWER
    rows, cols = rows[valid], cols[valid]
    index = torch.as_tensor(np.stack([np.r_[rows, cols], np.r_[cols, rows]]), device=device)
    values = torch.as_tensor(np.r_[weights, weights], dtype=torch.float32, device=device)
    w = torch.sparse_coo_tensor(index, values, (n, n), check_invariants=False).coalesce()
    degree = torch.zeros(n, device=device).index_add_(0, w.indices()[0], w.values())
    inv_sqrt = torch.where(degree > 0, degree.rsqrt(), torch.zeros_like(degree))
    i, j = w.indices()
    s = torch.sparse_coo_tensor(
        w.indices(), w.values() * inv_sqrt[i] * inv_sqrt[j], (n, n), check_invariants=False
    ).coalesce()

    y = torch.zeros(n, n_classes, device=device)
    seed_t = torch.as_tensor(seeds, dtype=torch.long, device=device)
    label_t = torch.as_tensor(seed_labels, dtype=torch.long, device=device)
    y[seed_t, label_t] = 1.0
    y /= y.sum(dim=0, keepdim=True).clamp(min=1.0)  # class-size normalisation
    f = _conjugate_gradient(lambda v: v - alpha * torch.sparse.mm(s, v), y)
    f = f.clamp(min=0.0)
    total = f.sum(dim=1, keepdim=True)
    probabilities = torch.where(total > 0, f / total.clamp(min=1e-30), 1.0 / n_classes)
    return probabilities.cpu().numpy()


def _conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iterations: int = CG_ITERATIONS
) -> torch.Tensor:
    """Solve A x = b for symmetric positive definite A, one column per class at once."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(dim=0)
    target = 1e-10 * rs.clamp(min=1e-30)
    for _ in range(iterations):
        ap = matvec(p)
        step = rs / (p * ap).sum(dim=0).clamp(min=1e-30)
        x += step * p
        r -= step * ap
        rs_next = (r * r).sum(dim=0)
        if bool((rs_next <= target).all()):
            break
        p = r + (rs_next / rs.clamp(min=1e-30)) * p
        rs = rs_next
    return x
