"""Stratified k-fold splits and classification metrics from out-of-fold predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.core.errors import FailedPrecondition
from indexer.core.validation import check_seed

#: The fold of an item whose class has a single example: always trained on, never held out.
ALWAYS_TRAIN = -1


def stratified_folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number (0..folds-1) per sample; each class spread evenly over the folds.

    Classes are dealt out in a seeded random order, continuing the round-robin across
    classes so fold sizes stay within one of each other (as scikit-learn's StratifiedKFold).
    A class with a single example gets ALWAYS_TRAIN: it cannot be held out and learnt.
    """
    rng = np.random.default_rng(check_seed(seed))
    assignment = np.full(len(y), ALWAYS_TRAIN, dtype=np.int64)
    offset = 0
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        if len(members) < 2:
            continue
        rng.shuffle(members)
        assignment[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return assignment


def usable_folds(y: np.ndarray, requested: int, what: str) -> int:
    """The number of folds to run: `requested`, or fewer when the rarest class that can be
    held out (two or more examples) is smaller. Needs two classes, one with two examples."""
    classes, counts = np.unique(y, return_counts=True)
    how = "`strata labels set ID... --label NAME` or `strata labels import FILE.csv`"
    if len(classes) == 0:
        raise FailedPrecondition(
            f"{what} needs human labels of at least 2 classes; found no labelled items",
            hint=f"label a few items of each class ({how})",
        )
    if len(classes) < 2:
        raise FailedPrecondition(
            f"{what} needs human labels of at least 2 classes; found "
            + ("1 labelled item" if len(y) == 1 else f"{len(y)} labelled items, all of one class")
            + ": label items of another class",
            hint=f"label a few items of each class ({how})",
        )
    if counts.max() < 2:
        raise FailedPrecondition(
            f"{what} needs 2 human-labelled items in at least one class, for cross-validation; "
            f"found {len(y)} labelled items in {len(classes)} classes, one each: "
            "label one more item of any class",
            hint=f"a few items of each class make the estimate worth having ({how})",
        )
    return int(max(2, min(requested, counts[counts >= 2].min())))


@dataclass(frozen=True)
class ClassMetric:
    label: str
    accuracy: float  # recall: the share of this class's items predicted as this class
    support: int


@dataclass(frozen=True)
class ClassificationReport:
    accuracy: float
    macro_f1: float
    per_class: list[ClassMetric]
    confusion: np.ndarray  # (classes, classes): rows true, columns predicted

    def as_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_class": [vars(m) for m in self.per_class],
            "confusion": self.confusion.tolist(),
        }


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]
) -> ClassificationReport:
    n = len(classes)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    hits = np.diag(confusion).astype(np.float64)
    recall = np.divide(hits, support, out=np.zeros(n), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros(n), where=predicted > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(n), where=denominator > 0)
    present = support > 0
    return ClassificationReport(
        accuracy=float(hits.sum() / max(1, len(y_true))),
        macro_f1=float(f1[present].mean()) if present.any() else 0.0,
        per_class=[
            ClassMetric(label, float(recall[i]), int(support[i])) for i, label in enumerate(classes)
        ],
        confusion=confusion,
    )
