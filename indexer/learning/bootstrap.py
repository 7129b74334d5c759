"""Label bootstrapping from a few human labels: predict the rest, suggest what to label
next, find human labels that look wrong.

The predictor is chosen by cross-validation on the human labels (`indexer.learning.choosing`:
probe, self-training, kNN, propagation per depth and the probe and self-training on two
depths' features combined; the answer is the ensemble of the best and every candidate within
one standard error of it). On CIFAR-10 with 10 labels a class it labelled the test images
0.66 right, against 0.60 for a plain probe at either depth (bench/probe.py). The chosen
predictor's out-of-fold probabilities find label issues (with cleanlab, see
`label_issues`); its predictions on the unlabelled items give labels and uncertainties.
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
from indexer.learning import labelled_vectors, mislabels
from indexer.learning.choosing import (
    ALL_METHODS,
    Candidate,
    Choice,
    Fitted,
    centred,
    choose,
    fit_predict,
    graph_of,
)
from indexer.learning.labelled_vectors import LabelledVectors
from indexer.learning.neighbours import EXACT_GRAPH_ITEMS, NeighbourGraph, exact_graph
from indexer.learning.selection import weighted_coverage
from indexer.store import label_repository, repository
from indexer.store.repository import DepthSpec

log = logging.getLogger(__name__)

__all__ = ["ALL_METHODS", "Candidate", "Choice", "centred"]

MAX_SUGGESTIONS = 10_000


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
    best, choice = choose(ctx, collection, depths, methods, folds, seed)
    data = best.data
    targets = data.unlabelled
    probabilities = fit_predict(ctx, best, targets, seed)
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
    best: Fitted | None = None
    try:
        best, _ = choose(ctx, collection, [depth] if depth else [], (), folds, seed)
        data, method = best.data, best.candidate.method
        spec = collection.depth(best.depth)
    except FailedPrecondition as exc:  # too few labels for any predictor: coverage alone
        log.info("suggesting by coverage alone: %s", exc)
        data = labelled_vectors.load(ctx, collection, spec)
    unlabelled = data.unlabelled
    weight = np.zeros(len(data.ids), np.float32)
    predicted: np.ndarray | None = None
    if best is not None and len(unlabelled):
        probabilities = fit_predict(ctx, best, unlabelled, seed)
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
    graph = _coverage_graph(ctx, collection, spec, best, data)
    known = np.flatnonzero(data.y != labelled_vectors.UNLABELLED)
    picks, scores = weighted_coverage(graph, candidates, known, weight, n, predicted)
    with ctx.sessions() as session:
        uris = label_repository.item_uris(session, collection.id, data.ids[picks].tolist())
    suggestions = [
        Suggestion(int(data.ids[p]), uris.get(int(data.ids[p]), ""), float(s))
        for p, s in zip(picks, scores, strict=True)
    ]
    return SuggestResult(spec.name, method, suggestions)


def _coverage_graph(
    ctx: Context,
    collection: CollectionInfo,
    spec: DepthSpec,
    best: Fitted | None,
    data: LabelledVectors,
) -> NeighbourGraph:
    """The neighbour graph whose balls suggest covers. Where the chosen predictor (or a
    member of its ensemble) works on several depths' features combined, the graph of those
    features, computed exactly (no FAISS index holds them; up to EXACT_GRAPH_ITEMS items):
    the representation cross-validation found best. On CIFAR-10 with 10 labels a class
    (+10 a class, 3 seeds, the study's self-training scoring them) picks covering that graph
    reached 0.700 on the test images; covering the pre-logits' own FAISS graph, which the
    ensemble's first member handed over before, 0.688, no better than random picks
    (0.684-0.688). Otherwise the predictor's own depth's graph."""
    members = (best, *best.members) if best is not None else ()
    combined = next((m for m in members if m.combined and not m.members), None)
    if combined is not None and len(combined.data.ids) <= EXACT_GRAPH_ITEMS:
        return exact_graph(combined.data.x, ctx.backbones.device)
    if best is not None and best.graph is not None:
        return best.graph
    # Combined features of a large collection: their best depth's graph (same item order).
    own = data if best is None or not best.combined else None
    return graph_of(ctx, collection, spec, own or labelled_vectors.load(ctx, collection, spec))


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
    best, choice = choose(ctx, collection, depths, methods, folds, seed)
    labelled = best.data.labelled[best.tested]
    return OutOfFold(
        choice,
        best.data.ids[labelled],
        best.data.y[labelled],
        best.out_of_fold[best.tested],
        best.data.classes,
    )
