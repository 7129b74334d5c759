"""Which human labels look wrong, from out-of-fold class probabilities: cleanlab's
confident learning (Northcutt et al., JAIR 2021), and the hand-written variant it replaced.

Both take the probabilities that a predictor gave each labelled item while that item was
held out (so its own label did not teach the predictor), and return the rows that look
mislabelled, most suspicious first, with the class each row looks like instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

CLEANLAB = "cleanlab"
HAND_WRITTEN = "confident-learning"


@dataclass(frozen=True)
class Flagged:
    rows: np.ndarray  # positions into the labels given, most suspicious first
    suggested: np.ndarray  # (len(rows),) the class each row looks like instead
    score: np.ndarray  # (len(rows),) 1 - probability of the given label


#: cleanlab's filter: flag the labels with the lowest self-confidence (out-of-fold P[given
#: label]), as many as its confident joint estimates (`cleanlab.count.num_label_issues`).
#: On CIFAR-10 with 5% / 20% of 3,000 labels flipped (bench/issues_study.py, 3 draws each)
#: it beat cleanlab's default, prune_by_noise_rate, on every measure: top-k precision
#: 0.711 / 0.820 against 0.680 / 0.802, precision of the flagged set 0.433 / 0.731 against
#: 0.289 / 0.604, recall 0.880 / 0.886 against 0.847 / 0.883. The default's per-pair
#: pruning passes over a wrong label whose out-of-fold probabilities are spread over
#: several classes, none of them confident: such a label is still the least believable.
CLEANLAB_FILTER = "low_self_confidence"


def cleanlab_issues(y: np.ndarray, p: np.ndarray) -> Flagged:
    """cleanlab's `find_label_issues` with CLEANLAB_FILTER, ranked by self-confidence. One
    process (n_jobs=1): the server runs this in a worker thread, where forking a pool would
    copy the whole server."""
    from cleanlab.filter import find_label_issues  # imports pandas: only when asked

    rows = np.asarray(
        find_label_issues(
            labels=y,
            pred_probs=p,
            filter_by=CLEANLAB_FILTER,
            return_indices_ranked_by="self_confidence",
            n_jobs=1,
        ),
        dtype=np.int64,
    )
    return _flagged(y, p, rows)


def hand_written_issues(y: np.ndarray, p: np.ndarray) -> Flagged:
    """Confident learning's counting step alone: with per-class thresholds t_j = mean
    P[j] over items labelled j, an item is counted for the class k maximising P[k] among
    those with P[k] >= t_k; an issue when that class is not its label; ranked by 1 - P[y]."""
    n_classes = p.shape[1]
    thresholds = np.array(
        [p[y == j, j].mean() if (y == j).any() else 1.0 for j in range(n_classes)]
    )
    above = p >= thresholds[None, :] - 1e-6
    confident = np.where(above, p, -1.0).argmax(axis=1)
    rows = np.flatnonzero(above.any(axis=1) & (confident != y))
    rows = rows[np.argsort(-(1.0 - p[rows, y[rows]]), kind="stable")]
    return Flagged(rows, confident[rows], 1.0 - p[rows, y[rows]])


FINDERS: dict[str, Callable[[np.ndarray, np.ndarray], Flagged]] = {
    CLEANLAB: cleanlab_issues,
    HAND_WRITTEN: hand_written_issues,
}


def find_issues(y: np.ndarray, p: np.ndarray, finder: str = CLEANLAB) -> Flagged:
    """The rows of `y` (class indices) that look mislabelled under probabilities `p`.
    cleanlab needs every class among the rows; when it refuses (a class with no held-out
    item, say), the hand-written method answers instead."""
    if finder == CLEANLAB:
        present = np.unique(y)
        if len(present) == p.shape[1] and len(present) > 1:
            try:
                return cleanlab_issues(y, p)
            except (ValueError, IndexError) as exc:
                log.info("cleanlab refused these labels (%s); hand-written method instead", exc)
        return hand_written_issues(y, p)
    return FINDERS[finder](y, p)


def _flagged(y: np.ndarray, p: np.ndarray, rows: np.ndarray) -> Flagged:
    others = p[rows].copy()
    others[np.arange(len(rows)), y[rows]] = -1.0
    return Flagged(rows, others.argmax(axis=1), 1.0 - p[rows, y[rows]])
