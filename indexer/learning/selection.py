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
once; once everything is covered, the rest go by their own weight with a gain of 0.

Picks are also spread evenly over the predicted classes (at most ceil(n / classes) per
class while other classes still have candidates): the most uncertain regions of a few-label
predictor cluster around one or two confusable classes, and a batch that piles into them
teaches less than a balanced one. On CIFAR-10 with 10 labels a class (8 seeds, 100 more
labels, self-training on stage 4) the quota moved the test accuracy after labelling from
0.669 to 0.684, against 0.678 for random picks.
"""

from __future__ import annotations

import numpy as np

from indexer.learning.neighbours import NeighbourGraph

MIN_WEIGHT = 0.05


def weighted_coverage(
    graph: NeighbourGraph,
    candidates: np.ndarray,
    labelled: np.ndarray,
    weight: np.ndarray,
    n: int,
    predicted: np.ndarray | None = None,
) -> tuple[list[int], list[float]]:
    """Up to `n` positions from `candidates` with their gains, best first. `graph`
    and `weight` (and `predicted`, each item's predicted class, when given) cover every
    item; `labelled` positions start out covered."""
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
    group = np.zeros(len(candidates), dtype=np.int64)
    if predicted is not None:
        group = np.unique(predicted[candidates], return_inverse=True)[1].reshape(-1)
    quota = -(-n // (int(group.max()) + 1))
    taken = np.zeros(int(group.max()) + 1, dtype=np.int64)
    picks: list[int] = []
    gains: list[float] = []
    for _ in range(min(n, len(candidates))):
        uncovered = np.where(covered, 0.0, weight)
        gain = (uncovered[balls[candidates]] * valid[candidates]).sum(axis=1)
        allowed = open_ & (taken[group] < quota)
        if not allowed.any():  # every class with candidates left has had its share
            allowed = open_
        # Ties (everything covered: all zero) go to the item's own weight.
        rank = np.where(allowed, gain + 1e-9 * weight[candidates], -1.0)
        best = int(np.argmax(rank))
        picks.append(int(candidates[best]))
        gains.append(float(gain[best]))
        open_[best] = False
        taken[group[best]] += 1
        covered[balls[candidates[best]][valid[candidates[best]]]] = True
    # Gains only fall as coverage grows and the quota narrows the choice, except when the
    # quota is lifted near the end; a stable sort keeps the pick order otherwise.
    order = sorted(range(len(picks)), key=lambda i: -gains[i])
    return [picks[i] for i in order], [gains[i] for i in order]
