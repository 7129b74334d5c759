"""Choosing which unlabelled items to label next: uncertainty-weighted coverage.

Each item "covers" itself and its k nearest neighbours. Greedily, the next pick is the
candidate whose ball holds the most uncertainty not yet covered by a labelled item or an
earlier pick (uncertainty = 1 - margin between the predictor's top two classes). This
joins the two usual signals: uncertainty (margin sampling) and diversity (coverage, as
ProbCover, Yehuda et al. 2022, which unlike k-center avoids outliers; outliers are what
k-center picks first and what helps least with few labels). With no predictor yet, every
weight is 1 and it is pure coverage, a good cold start. Every uncovered item weighs at
least MIN_WEIGHT, so coverage still counts where the predictor is sure. Balls shrink on
small collections so that the labelled items and the picks cannot cover everything at
once; once everything is covered, the rest go by their own weight with a gain of 0. The
gain never grows as coverage grows, so scores come out best first.
"""

from __future__ import annotations

import numpy as np

from indexer.neighbours import NeighbourGraph

MIN_WEIGHT = 0.05


def weighted_coverage(
    graph: NeighbourGraph,
    candidates: np.ndarray,
    labelled: np.ndarray,
    weight: np.ndarray,
    n: int,
) -> tuple[list[int], list[float]]:
    """Up to `n` positions from `candidates` with their gains, best first. `graph` and
    `weight` cover every item; `labelled` positions start out covered."""
    if len(candidates) == 0:
        return [], []
    items = len(graph.neighbours)
    k = int(np.clip(items // max(1, len(labelled) + n), 1, graph.neighbours.shape[1]))
    balls = np.concatenate([np.arange(items)[:, None], graph.neighbours[:, :k]], axis=1)
    valid = balls >= 0
    balls = np.where(valid, balls, 0)
    weight = MIN_WEIGHT + (1.0 - MIN_WEIGHT) * np.clip(weight, 0.0, 1.0)
    covered = np.zeros(items, dtype=bool)
    covered[balls[labelled][valid[labelled]]] = True
    open_ = np.ones(len(candidates), dtype=bool)
    picks: list[int] = []
    gains: list[float] = []
    for _ in range(min(n, len(candidates))):
        uncovered = np.where(covered, 0.0, weight)
        gain = (uncovered[balls[candidates]] * valid[candidates]).sum(axis=1)
        # Ties (everything covered: all zero) go to the item's own weight.
        rank = np.where(open_, gain + 1e-9 * weight[candidates], -1.0)
        best = int(np.argmax(rank))
        picks.append(int(candidates[best]))
        gains.append(float(gain[best]))
        open_[best] = False
        covered[balls[candidates[best]][valid[candidates[best]]]] = True
    return picks, gains
