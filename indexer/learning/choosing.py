"""Choosing a label predictor by cross-validation on the human labels.

The predictors of `indexer.learning.predictors` (a linear probe, the probe self-trained on
its confident predictions, a weighted kNN vote, label propagation over the collection's
FAISS neighbour graph) compete at every depth by stratified k-fold accuracy on the human
labels, on the same folds. So do the probe and self-training on the two best depths'
features combined: each depth centred on the collection's mean and scaled to unit length,
then concatenated (centring makes cosines compare items with each other rather than with
the collection's common direction; the unit scale gives each depth an equal say).

The answer is the `ensemble` of every candidate that CV cannot tell from the best: the mean
probabilities of those whose CV accuracy is within one standard error of the best's (the
one-standard-error rule). With few labels, CV accuracy is a noisy estimate (100 labels: a
standard error near 0.05), and the best of some twenty noisy estimates is the most
optimistic of them; averaging the near-ties instead keeps what each of them gets right and
needs no constant tuned on a benchmark. With many labels the set shrinks to the near-ties
themselves. On CIFAR-10 with 10 labels a class (5 seeds, bench/README) the mean of the
near-ties reached 0.660 on the test images against 0.649 for the single best by CV. When
only the best is within one standard error, it is the answer alone.

Self-training is the slowest candidate (five refits on up to 25x the labels). Trying it
only at the two depths where the probe did best was measured and dropped: on the CIFAR
collection of bench/probe.py (five depths, 10 labels a class) `choose` took 106.8 s with it
and 106.5 s without (the three shallow depths are small and fit fast).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.catalog.collections import CollectionInfo
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput
from indexer.learning import labelled_vectors, predictors
from indexer.learning.evaluation import stratified_folds, usable_folds
from indexer.learning.labelled_vectors import LabelledVectors
from indexer.learning.neighbours import NeighbourGraph, neighbour_graph
from indexer.learning.predictors import METHODS
from indexer.learning.probes import check_folds
from indexer.store.repository import DepthSpec

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
ALL_METHODS: tuple[str, ...] = (*METHODS, ENSEMBLE)
#: The ensemble averages the candidates whose CV accuracy is within this many standard
#: errors of the best's.
ENSEMBLE_WITHIN_SE = 1.0
#: Depths whose features the combined candidates concatenate, and the predictors tried on
#: them (those without a neighbour graph: FAISS indexes hold one depth each).
COMBINED_DEPTHS = 2
COMBINED_METHODS: tuple[str, ...] = ("probe", "self-training")


@dataclass(frozen=True)
class Candidate:
    method: str
    depth: str
    cv_accuracy: float


@dataclass
class Fitted:
    """One depth's data and graph, and a candidate's out-of-fold probabilities there."""

    candidate: Candidate
    data: LabelledVectors
    graph: NeighbourGraph | None
    out_of_fold: np.ndarray  # (labelled, classes), rows in data.labelled order
    tested: np.ndarray  # (labelled,) bool: rows that were held out once (not singletons)
    #: An ensemble's members, best first (data and graph are the first member's).
    members: tuple[Fitted, ...] = ()
    #: The depths whose features `data` combines, best first (empty: one depth's own).
    combined: tuple[str, ...] = ()

    @property
    def depth(self) -> str:
        """The one depth this predictor works at (an ensemble: its best member's; combined
        features: the best of their depths)."""
        if self.members:
            return self.members[0].depth
        return self.combined[0] if self.combined else self.candidate.depth


@dataclass(frozen=True)
class Choice:
    best: Candidate
    candidates: list[Candidate]


def check_methods(methods: Sequence[str]) -> list[str]:
    chosen = list(dict.fromkeys(methods)) or list(ALL_METHODS)
    unknown = [m for m in chosen if m not in ALL_METHODS]
    if unknown:
        raise InvalidInput(
            f"unknown method(s) {', '.join(unknown)}", hint=f"use {', '.join(ALL_METHODS)}"
        )
    return chosen


def choose(
    ctx: Context,
    collection: CollectionInfo,
    depths: Sequence[str],
    methods: Sequence[str],
    folds: int,
    seed: int,
) -> tuple[Fitted, Choice]:
    """Cross-validate every (method, depth) on the same folds; the answer is the ensemble of
    the best and its near-ties (within one standard error), or the best alone."""
    check_folds(folds)
    chosen = check_methods(methods)
    # An ensemble alone still needs its members evaluated.
    methods = [m for m in chosen if m != ENSEMBLE] or list(METHODS)
    specs = [collection.depth(d) for d in dict.fromkeys(depths)] or list(collection.depths)
    fitted: list[Fitted] = []
    what = f"predicting labels in collection {collection.name!r}"
    for spec in specs:
        data = labelled_vectors.load(ctx, collection, spec)
        graph = graph_of(ctx, collection, spec, data) if "propagation" in methods else None
        fitted += _cross_validate(ctx, data, graph, methods, spec.name, folds, seed, what)
    combined_methods = [m for m in COMBINED_METHODS if m in methods]
    if combined_methods and len(specs) > 1:
        fitted += _combined(ctx, fitted, combined_methods, folds, seed, what)
    ensemble = _ensemble(fitted) if ENSEMBLE in chosen else None
    if ensemble is not None:
        fitted.append(ensemble)
        log.info(
            "CV ensemble of %s: accuracy %.3f",
            ", ".join(f"{m.candidate.method} at {m.candidate.depth}" for m in ensemble.members),
            ensemble.candidate.cv_accuracy,
        )
        # The one-standard-error rule: the mean of the near-ties, not the luckiest of them.
        best = ensemble
    else:
        allowed = [f for f in fitted if f.candidate.method in chosen]
        if not allowed:  # only an ensemble was asked for, and there was none to build
            raise InvalidInput(
                "methods=['ensemble'] found no two candidates within one standard error of "
                "the best by cross-validation (or no two depths with vectors for every item)",
                hint="add another method, or name more depths (or none, for every depth)",
            )
        best = max(allowed, key=lambda f: f.candidate.cv_accuracy)
    return best, Choice(best.candidate, [f.candidate for f in fitted])


def _cross_validate(
    ctx: Context,
    data: LabelledVectors,
    graph: NeighbourGraph | None,
    methods: Sequence[str],
    depth: str,
    folds: int,
    seed: int,
    what: str,
) -> list[Fitted]:
    """Every method's out-of-fold probabilities on `data`, on the folds of `seed` (the same
    folds at every depth: the labels and the seed decide them)."""
    labelled = data.labelled
    y = data.y[labelled]
    assignment = stratified_folds(y, usable_folds(y, folds, what), seed)
    tested = assignment >= 0
    oof = {m: np.zeros((len(labelled), len(data.classes)), np.float32) for m in methods}
    for fold in np.unique(assignment[tested]):
        train, test = labelled[assignment != fold], labelled[assignment == fold]
        found = predictors.predict(methods, data, graph, train, test, ctx.backbones.device, seed)
        for method, probabilities in found.items():
            oof[method][assignment == fold] = probabilities
    out = []
    for method in methods:
        accuracy = float((oof[method][tested].argmax(axis=1) == y[tested]).mean())
        out.append(Fitted(Candidate(method, depth, accuracy), data, graph, oof[method], tested))
        log.info("CV %s at %s: accuracy %.3f", method, depth, accuracy)
    return out


def _combined(
    ctx: Context,
    fitted: list[Fitted],
    methods: Sequence[str],
    folds: int,
    seed: int,
    what: str,
) -> list[Fitted]:
    """`methods` on the features of the COMBINED_DEPTHS depths whose best candidates did
    best, each centred on the collection's mean and unit-scaled, concatenated."""
    best_per_depth: dict[str, Fitted] = {}
    for f in sorted(fitted, key=lambda f: -f.candidate.cv_accuracy):
        if not f.members:
            best_per_depth.setdefault(f.candidate.depth, f)
    members = [f.data for f in best_per_depth.values()][:COMBINED_DEPTHS]
    if len(members) < 2 or any(not np.array_equal(m.ids, members[0].ids) for m in members):
        return []  # an item lacks a vector at some depth: rows would not line up
    x = np.concatenate([centred(m.x) for m in members], axis=1)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    first = members[0]
    data = LabelledVectors(first.ids, np.ascontiguousarray(x, np.float32), first.y, first.classes)
    depths = tuple(best_per_depth)[:COMBINED_DEPTHS]
    out = _cross_validate(ctx, data, None, methods, "+".join(depths), folds, seed, what)
    for f in out:
        f.combined = depths
    return out


def centred(x: np.ndarray) -> np.ndarray:
    """Vectors minus their mean, scaled to unit length (rows of zeros stay zero)."""
    x = x - x.mean(axis=0, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _ensemble(fitted: list[Fitted]) -> Fitted | None:
    """The mean of every candidate whose CV accuracy is within ENSEMBLE_WITHIN_SE standard
    errors of the best's (binomial: sqrt(p (1 - p) / held-out labels)), scored on the same
    folds from the members' out-of-fold probabilities (no refitting); None when the best
    has no such near-tie."""
    ranked = sorted(fitted, key=lambda f: -f.candidate.cv_accuracy)
    first = ranked[0]
    best = first.candidate.cv_accuracy
    standard_error = math.sqrt(max(best * (1.0 - best), 0.0) / max(int(first.tested.sum()), 1))
    members = tuple(
        f
        for f in ranked
        if f.candidate.cv_accuracy >= best - ENSEMBLE_WITHIN_SE * standard_error
        and np.array_equal(f.data.ids, first.data.ids)  # rows line up (every item, every depth)
    )
    return mean_of(members) if len(members) >= 2 else None


def mean_of(members: tuple[Fitted, ...]) -> Fitted:
    """An ensemble of `members` (rows in the same order): their mean out-of-fold
    probabilities, scored on the same folds (no refitting)."""
    first = members[0]
    out_of_fold = np.mean([m.out_of_fold for m in members], axis=0)
    y = first.data.y[first.data.labelled]
    tested = first.tested
    accuracy = float((out_of_fold[tested].argmax(axis=1) == y[tested]).mean())
    depths = dict.fromkeys(d for m in members for d in m.candidate.depth.split("+"))
    candidate = Candidate(ENSEMBLE, "+".join(depths), accuracy)
    # `data` and `graph` are the first member's, so it says whether `data` is combined.
    return Fitted(candidate, first.data, first.graph, out_of_fold, tested, members, first.combined)


def graph_of(
    ctx: Context, collection: CollectionInfo, spec: DepthSpec, data: LabelledVectors
) -> NeighbourGraph:
    index = ctx.indexes.get(collection.id, spec.name, spec.dim)
    return neighbour_graph(index, data.ids, data.x)


def fit_predict(ctx: Context, best: Fitted, targets: np.ndarray, seed: int) -> np.ndarray:
    """The chosen predictor, learning from every human label, on the items at `targets`."""
    if best.members:
        return np.mean([fit_predict(ctx, m, targets, seed) for m in best.members], axis=0)
    method = best.candidate.method
    found = predictors.predict(
        [method], best.data, best.graph, best.data.labelled, targets, ctx.backbones.device, seed
    )
    return found[method]
