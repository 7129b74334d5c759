"""Label bootstrapping from a few human labels: predict the rest, suggest what to label
next, find human labels that look wrong.

The predictors of `indexer.predictors` (a linear probe, the probe self-trained on its
confident predictions, a weighted kNN vote, label propagation over the collection's FAISS
neighbour graph) compete at every depth by stratified k-fold accuracy on the human labels,
on the same folds. So does an `ensemble`: the mean probabilities of the best predictor at
each of the two best depths (depths see different things, and their errors differ: on
CIFAR-10 with 300 labels a class, stage 4 0.762 and pre-logits 0.769 became 0.778 on the
test images). The winner's out-of-fold probabilities find label issues; its predictions on
the unlabelled items give labels and uncertainties.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from indexer.catalog.collections import CollectionInfo, get_collection
from indexer.catalog.context import Context
from indexer.core.errors import FailedPrecondition, InvalidInput
from indexer.core.vocabulary import DEFAULT_FOLDS
from indexer.learning import labelled_vectors, predictors
from indexer.learning.evaluation import stratified_folds, usable_folds
from indexer.learning.labelled_vectors import LabelledVectors
from indexer.learning.neighbours import NeighbourGraph, neighbour_graph
from indexer.learning.predictors import METHODS
from indexer.learning.probes import check_folds
from indexer.learning.selection import weighted_coverage
from indexer.store import label_repository, repository
from indexer.store.repository import DepthSpec

log = logging.getLogger(__name__)

MAX_SUGGESTIONS = 10_000
ENSEMBLE = "ensemble"
ALL_METHODS: tuple[str, ...] = (*METHODS, ENSEMBLE)
#: Depths whose best predictors the ensemble averages.
ENSEMBLE_DEPTHS = 2


@dataclass(frozen=True)
class Candidate:
    method: str
    depth: str
    cv_accuracy: float


@dataclass
class _Fitted:
    """One depth's data and graph, and a candidate's out-of-fold probabilities there."""

    candidate: Candidate
    data: LabelledVectors
    graph: NeighbourGraph | None
    out_of_fold: np.ndarray  # (labelled, classes), rows in data.labelled order
    tested: np.ndarray  # (labelled,) bool: rows that were held out once (not singletons)
    #: An ensemble's members, best first (data and graph are the first member's).
    members: tuple[_Fitted, ...] = ()

    @property
    def depth(self) -> str:
        """The one depth this predictor works at (an ensemble: its best member's)."""
        return self.members[0].depth if self.members else self.candidate.depth


@dataclass(frozen=True)
class Choice:
    best: Candidate
    candidates: list[Candidate]


@dataclass(frozen=True)
class LabelPrediction:
    id: int
    uri: str
    label: str
    confidence: float


@dataclass(frozen=True)
class PredictResult:
    choice: Choice
    predictions: list[LabelPrediction]
    stored: int


@dataclass(frozen=True)
class Suggestion:
    id: int
    uri: str
    score: float


@dataclass(frozen=True)
class SuggestResult:
    depth: str
    method: str  # the predictor behind the uncertainties; "" when there were too few labels
    suggestions: list[Suggestion]


@dataclass(frozen=True)
class LabelIssue:
    id: int
    uri: str
    label: str
    suggested: str
    score: float  # 1 - out-of-fold probability of the given label


@dataclass(frozen=True)
class IssuesResult:
    choice: Choice
    issues: list[LabelIssue]


# -- choosing a predictor -------------------------------------------------------------------


def _check_methods(methods: Sequence[str]) -> list[str]:
    chosen = list(dict.fromkeys(methods)) or list(ALL_METHODS)
    unknown = [m for m in chosen if m not in ALL_METHODS]
    if unknown:
        raise InvalidInput(
            f"unknown method(s) {', '.join(unknown)}", hint=f"use {', '.join(ALL_METHODS)}"
        )
    return chosen


def _choose(
    ctx: Context,
    collection: CollectionInfo,
    depths: Sequence[str],
    methods: Sequence[str],
    folds: int,
    seed: int,
) -> tuple[_Fitted, Choice]:
    """Cross-validate every (method, depth) on the same folds; the most accurate wins."""
    check_folds(folds)
    chosen = _check_methods(methods)
    # An ensemble alone still needs its members evaluated.
    methods = [m for m in chosen if m != ENSEMBLE] or list(METHODS)
    specs = [collection.depth(d) for d in dict.fromkeys(depths)] or list(collection.depths)
    fitted: list[_Fitted] = []
    for spec in specs:
        data = labelled_vectors.load(ctx, collection, spec)
        labelled = data.labelled
        y = data.y[labelled]
        k = usable_folds(y, folds, f"predicting labels in collection {collection.name!r}")
        assignment = stratified_folds(y, k, seed)
        tested = assignment >= 0
        graph = _graph(ctx, collection, spec, data) if "propagation" in methods else None
        oof = {m: np.zeros((len(labelled), len(data.classes)), np.float32) for m in methods}
        for fold in np.unique(assignment[tested]):
            train, test = labelled[assignment != fold], labelled[assignment == fold]
            found = predictors.predict(
                methods, data, graph, train, test, ctx.backbones.device, seed
            )
            for method, probabilities in found.items():
                oof[method][assignment == fold] = probabilities
        for method in methods:
            accuracy = float((oof[method][tested].argmax(axis=1) == y[tested]).mean())
            candidate = Candidate(method, spec.name, accuracy)
            fitted.append(_Fitted(candidate, data, graph, oof[method], tested))
            log.info("CV %s at %s: accuracy %.3f", method, spec.name, accuracy)
    ensemble = _ensemble(fitted) if ENSEMBLE in chosen and len(specs) > 1 else None
    if ensemble is not None:
        fitted.append(ensemble)
        log.info(
            "CV ensemble of %s: accuracy %.3f",
            ensemble.candidate.depth,
            ensemble.candidate.cv_accuracy,
        )
    allowed = [f for f in fitted if f.candidate.method in chosen]
    if not allowed:  # only an ensemble was asked for, and there was none to build
        raise InvalidInput(
            f"methods=['ensemble'] needs two or more depths with vectors for every item; "
            f"got {len(specs)} depth(s)",
            hint="name several depths (or none, for every depth), or add another method",
        )
    best = max(allowed, key=lambda f: f.candidate.cv_accuracy)
    return best, Choice(best.candidate, [f.candidate for f in fitted])


def _ensemble(fitted: list[_Fitted]) -> _Fitted | None:
    """The mean of the best predictor at each of the ENSEMBLE_DEPTHS best depths, scored
    on the same folds from the members' out-of-fold probabilities (no refitting)."""
    best_per_depth: dict[str, _Fitted] = {}
    for f in sorted(fitted, key=lambda f: -f.candidate.cv_accuracy):
        best_per_depth.setdefault(f.candidate.depth, f)
    members = tuple(best_per_depth.values())[:ENSEMBLE_DEPTHS]
    first = members[0]
    if any(not np.array_equal(m.data.ids, first.data.ids) for m in members):
        return None  # an item lacks a vector at some depth: rows would not line up
    out_of_fold = np.mean([m.out_of_fold for m in members], axis=0)
    y = first.data.y[first.data.labelled]
    tested = first.tested
    accuracy = float((out_of_fold[tested].argmax(axis=1) == y[tested]).mean())
    depth = "+".join(m.candidate.depth for m in members)
    candidate = Candidate(ENSEMBLE, depth, accuracy)
    return _Fitted(candidate, first.data, first.graph, out_of_fold, tested, members)


def _graph(
    ctx: Context, collection: CollectionInfo, spec: DepthSpec, data: LabelledVectors
) -> NeighbourGraph:
    index = ctx.indexes.get(collection.id, spec.name, spec.dim)
    return neighbour_graph(index, data.ids, data.x)


def _fit_predict(ctx: Context, best: _Fitted, targets: np.ndarray, seed: int) -> np.ndarray:
    """The chosen predictor, learning from every human label, on the items at `targets`."""
    if best.members:
        return np.mean([_fit_predict(ctx, m, targets, seed) for m in best.members], axis=0)
    method = best.candidate.method
    found = predictors.predict(
        [method], best.data, best.graph, best.data.labelled, targets, ctx.backbones.device, seed
    )
    return found[method]


# -- predict --------------------------------------------------------------------------------


def predict_labels(
    ctx: Context,
    collection_name: str,
    depths: Sequence[str] = (),
    methods: Sequence[str] = (),
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    dry_run: bool = False,
) -> PredictResult:
    """Label every item without a human label with the best predictor; store the labels
    as `predicted` (never over a human label) unless `dry_run`."""
    collection = get_collection(ctx, collection_name)
    best, choice = _choose(ctx, collection, depths, methods, folds, seed)
    data = best.data
    targets = data.unlabelled
    probabilities = _fit_predict(ctx, best, targets, seed)
    winners = probabilities.argmax(axis=1)
    ids = data.ids[targets].tolist()
    confidence = probabilities[np.arange(len(targets)), winners]
    stored = 0
    with ctx.sessions.begin() as session:
        uris = label_repository.item_uris(session, collection.id, ids)
        if not dry_run:
            stored = label_repository.set_predicted_labels(
                session,
                {
                    item_id: (data.classes[w], float(c))
                    for item_id, w, c in zip(ids, winners, confidence, strict=True)
                },
            )
    predictions = [
        LabelPrediction(item_id, uris.get(item_id, ""), data.classes[w], float(c))
        for item_id, w, c in zip(ids, winners, confidence, strict=True)
    ]
    return PredictResult(choice, predictions, stored)


# -- suggest --------------------------------------------------------------------------------


def suggest_labels(
    ctx: Context,
    collection_name: str,
    n: int,
    depth: str = "",
    metadata: Mapping[str, str] | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> SuggestResult:
    """The `n` unlabelled items most worth labelling next, by uncertainty-weighted
    coverage of the neighbour graph (see indexer.selection), with the uncertainties of the
    best predictor by cross-validation. Only items with the given metadata are suggested."""
    if not 1 <= n <= MAX_SUGGESTIONS:
        raise InvalidInput(f"n={n} is out of range", hint=f"use 1..{MAX_SUGGESTIONS}")
    collection = get_collection(ctx, collection_name)
    spec = collection.depth(depth) if depth else collection.depths[-1]
    method = ""
    best: _Fitted | None = None
    try:
        best, _ = _choose(ctx, collection, [depth] if depth else [], (), folds, seed)
        data, method = best.data, best.candidate.method
        spec = collection.depth(best.depth)
    except FailedPrecondition as exc:  # too few labels for any predictor: coverage alone
        log.info("suggesting by coverage alone: %s", exc)
        data = labelled_vectors.load(ctx, collection, spec)
    unlabelled = data.unlabelled
    weight = np.zeros(len(data.ids), np.float32)
    predicted: np.ndarray | None = None
    if best is not None and len(unlabelled):
        probabilities = _fit_predict(ctx, best, unlabelled, seed)
        top2 = -np.sort(-probabilities, axis=1)[:, :2]
        weight[unlabelled] = 1.0 - (top2[:, 0] - top2[:, 1])
        predicted = np.zeros(len(data.ids), np.int64)
        predicted[unlabelled] = probabilities.argmax(axis=1)
    else:
        weight[unlabelled] = 1.0
    candidates = unlabelled
    if metadata:
        with ctx.sessions() as session:
            allowed = repository.filter_item_ids(session, collection.id, (), metadata)
        candidates = candidates[np.isin(data.ids[candidates], allowed)]
    graph = best.graph if best is not None and best.graph is not None else None
    if graph is None:
        graph = _graph(ctx, collection, spec, data)
    known = np.flatnonzero(data.y != labelled_vectors.UNLABELLED)
    picks, scores = weighted_coverage(graph, candidates, known, weight, n, predicted)
    with ctx.sessions() as session:
        uris = label_repository.item_uris(session, collection.id, data.ids[picks].tolist())
    suggestions = [
        Suggestion(int(data.ids[p]), uris.get(int(data.ids[p]), ""), float(s))
        for p, s in zip(picks, scores, strict=True)
    ]
    return SuggestResult(spec.name, method, suggestions)


# -- issues ---------------------------------------------------------------------------------


def label_issues(
    ctx: Context,
    collection_name: str,
    depths: Sequence[str] = (),
    methods: Sequence[str] = (),
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> IssuesResult:
    """Human labels that look wrong, most suspicious first, by confident learning
    (Northcutt et al., as cleanlab's `find_label_issues(filter_by="confident_learning")`):
    with out-of-fold probabilities P and per-class thresholds t_j = mean P[j] over items
    labelled j, an item is counted for the class k maximising P[k] among those with
    P[k] >= t_k; it is an issue when that class is not its label."""
    collection = get_collection(ctx, collection_name)
    best, choice = _choose(ctx, collection, depths, methods, folds, seed)
    data, p = best.data, best.out_of_fold[best.tested]
    labelled = data.labelled[best.tested]
    y = data.y[labelled]
    n_classes = len(data.classes)
    thresholds = np.array(
        [p[y == j, j].mean() if (y == j).any() else 1.0 for j in range(n_classes)]
    )
    above = p >= thresholds[None, :] - 1e-6
    confident = np.where(above, p, -1.0).argmax(axis=1)
    flagged = above.any(axis=1) & (confident != y)
    rows = np.flatnonzero(flagged)
    score = 1.0 - p[rows, y[rows]]
    rows = rows[np.argsort(-score, kind="stable")]
    ids = data.ids[labelled[rows]].tolist()
    with ctx.sessions() as session:
        uris = label_repository.item_uris(session, collection.id, ids)
    issues = [
        LabelIssue(
            item_id,
            uris.get(item_id, ""),
            data.classes[y[r]],
            data.classes[confident[r]],
            float(1.0 - p[r, y[r]]),
        )
        for item_id, r in zip(ids, rows, strict=True)
    ]
    return IssuesResult(choice, issues)
