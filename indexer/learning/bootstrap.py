"""Label bootstrapping from a few human labels: predict the rest, suggest what to label
next, find human labels that look wrong.

The predictors of `indexer.predictors` (a linear probe, the probe self-trained on its
confident predictions, a weighted kNN vote, label propagation over the collection's FAISS
neighbour graph) compete at every depth by stratified k-fold accuracy on the human labels,
on the same folds. So does an `ensemble`: the mean probabilities of the best predictor at
each of the two best depths (depths see different things, and their errors differ: on
CIFAR-10 with 300 labels a class, stage 4 0.762 and pre-logits 0.769 became 0.778 on the
test images). And the probe and self-training on the two best depths' features
combined: each depth centred on the collection's mean and scaled to unit length, then
concatenated (centring makes cosines compare items with each other rather than with the
collection's common direction; the unit scale gives each depth an equal say). On CIFAR-10
with 10 labels a class, self-training on stage 4 + pre-logits combined labelled the test
images 0.66 right, against 0.60 for a plain probe at either depth (bench/probe.py). The
winner's out-of-fold probabilities find label issues (with cleanlab, see `label_issues`);
its predictions on the unlabelled items give labels and uncertainties.
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
from indexer.learning import labelled_vectors, mislabels, predictors
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
class _Fitted:
    """One depth's data and graph, and a candidate's out-of-fold probabilities there."""

    candidate: Candidate
    data: LabelledVectors
    graph: NeighbourGraph | None
    out_of_fold: np.ndarray  # (labelled, classes), rows in data.labelled order
    tested: np.ndarray  # (labelled,) bool: rows that were held out once (not singletons)
    #: An ensemble's members, best first (data and graph are the first member's).
    members: tuple[_Fitted, ...] = ()
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
    what = f"predicting labels in collection {collection.name!r}"
    for spec in specs:
        data = labelled_vectors.load(ctx, collection, spec)
        graph = _graph(ctx, collection, spec, data) if "propagation" in methods else None
        fitted += _cross_validate(ctx, data, graph, methods, spec.name, folds, seed, what)
    ensemble = _ensemble(fitted) if ENSEMBLE in chosen and len(specs) > 1 else None
    if ensemble is not None:
        fitted.append(ensemble)
        log.info(
            "CV ensemble of %s: accuracy %.3f",
            ensemble.candidate.depth,
            ensemble.candidate.cv_accuracy,
        )
    combined_methods = [m for m in COMBINED_METHODS if m in methods]
    if combined_methods and len(specs) > 1:
        fitted += _combined(ctx, fitted, combined_methods, folds, seed, what)
    allowed = [f for f in fitted if f.candidate.method in chosen]
    if not allowed:  # only an ensemble was asked for, and there was none to build
        raise InvalidInput(
            f"methods=['ensemble'] needs two or more depths with vectors for every item; "
            f"got {len(specs)} depth(s)",
            hint="name several depths (or none, for every depth), or add another method",
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
) -> list[_Fitted]:
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
        out.append(_Fitted(Candidate(method, depth, accuracy), data, graph, oof[method], tested))
        log.info("CV %s at %s: accuracy %.3f", method, depth, accuracy)
    return out


def _combined(
    ctx: Context,
    fitted: list[_Fitted],
    methods: Sequence[str],
    folds: int,
    seed: int,
    what: str,
) -> list[_Fitted]:
    """`methods` on the features of the COMBINED_DEPTHS depths whose best candidates did
    best, each centred on the collection's mean and unit-scaled, concatenated."""
    best_per_depth: dict[str, _Fitted] = {}
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
        # Combined features have no FAISS index: their best depth's graph (same item order).
        own = data if best is None or not best.combined else None
        graph = _graph(ctx, collection, spec, own or labelled_vectors.load(ctx, collection, spec))
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
    finder: str = mislabels.CLEANLAB,
) -> IssuesResult:
    """Human labels that look wrong, most suspicious first: the out-of-fold probabilities
    of the best predictor by cross-validation into cleanlab's `find_label_issues` (or the
    hand-written confident-learning count it replaced; bench/probe.py compares them)."""
    collection = get_collection(ctx, collection_name)
    found = out_of_fold(ctx, collection, depths, methods, folds, seed)
    flagged = mislabels.find_issues(found.y, found.probabilities, finder)
    ids = found.ids[flagged.rows].tolist()
    with ctx.sessions() as session:
        uris = label_repository.item_uris(session, collection.id, ids)
    issues = [
        LabelIssue(
            item_id,
            uris.get(item_id, ""),
            found.classes[found.y[r]],
            found.classes[suggested],
            float(score),
        )
        for item_id, r, suggested, score in zip(
            ids, flagged.rows, flagged.suggested, flagged.score, strict=True
        )
    ]
    return IssuesResult(found.choice, issues)


@dataclass(frozen=True)
class OutOfFold:
    """The best predictor's out-of-fold probabilities for the human labels it held out."""

    choice: Choice
    ids: np.ndarray  # (n,) item ids
    y: np.ndarray  # (n,) human label as a class index
    probabilities: np.ndarray  # (n, classes)
    classes: list[str]


def out_of_fold(
    ctx: Context,
    collection: CollectionInfo,
    depths: Sequence[str] = (),
    methods: Sequence[str] = (),
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> OutOfFold:
    best, choice = _choose(ctx, collection, depths, methods, folds, seed)
    labelled = best.data.labelled[best.tested]
    return OutOfFold(
        choice,
        best.data.ids[labelled],
        best.data.y[labelled],
        best.out_of_fold[best.tested],
        best.data.classes,
    )
