"""Linear probes per depth: how well a depth's frozen features separate the human labels.

Per depth: stratified k-fold held-out metrics (each fold's probe picks its own L2 strength
by inner CV), then a probe trained on every labelled item, stored in SQL, used to predict
class probabilities for stored items or new images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.catalog.collections import CollectionInfo, get_collection
from indexer.catalog.context import Context
from indexer.catalog.embed import embed_images
from indexer.core.errors import InvalidInput, NotFound, StrataError, missing_items
from indexer.core.vocabulary import DEFAULT_FOLDS
from indexer.learning import labelled_vectors
from indexer.learning.evaluation import (
    ClassMetric,
    classification_report,
    stratified_folds,
    usable_folds,
)
from indexer.learning.linear_model import LinearModel, fit_linear
from indexer.store import label_repository, repository
from indexer.store.label_repository import StoredProbe
from indexer.store.repository import DepthSpec

log = logging.getLogger(__name__)

MAX_FOLDS = 20


@dataclass(frozen=True)
class DepthReport:
    depth: str
    dim: int
    accuracy: float
    macro_f1: float
    n_train: int  # labelled items the stored probe was trained on
    n_test: int  # held-out predictions behind the metrics (each labelled item once, but
    # items of single-example classes, which are only ever trained on)
    folds: int
    c: float  # the stored probe's L2 strength (scikit-learn's C), by inner CV
    classes: list[str]
    per_class: list[ClassMetric]
    confusion: np.ndarray  # rows true, columns predicted, in `classes` order


@dataclass(frozen=True)
class ProbePrediction:
    uri: str
    id: int  # 0 for an image that is not stored
    probabilities: np.ndarray | None  # in the probe's class order
    error: StrataError | None = None


def check_folds(folds: int) -> int:
    if not 2 <= folds <= MAX_FOLDS:
        raise InvalidInput(f"folds={folds} is out of range", hint=f"use 2..{MAX_FOLDS}")
    return folds


def out_of_fold_probabilities(
    x: np.ndarray, y: np.ndarray, n_classes: int, folds: np.ndarray, ctx: Context, seed: int
) -> np.ndarray:
    """Each sample's class probabilities from a probe that never saw it (rows of samples
    that are never held out stay zero)."""
    out = np.zeros((len(y), n_classes), np.float32)
    for fold in np.unique(folds[folds >= 0]):
        train, test = folds != fold, folds == fold
        model = fit_linear(x[train], y[train], n_classes, ctx.backbones.device, seed=seed)
        out[test] = model.probabilities(x[test], ctx.backbones.device)
    return out


def run_probes(
    ctx: Context,
    collection_name: str,
    depths: Sequence[str] = (),
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> list[DepthReport]:
    """Cross-validate, train and store a probe at each depth (default: every depth)."""
    check_folds(folds)
    collection = get_collection(ctx, collection_name)
    chosen = [collection.depth(d) for d in dict.fromkeys(depths)] or list(collection.depths)
    return [_probe_depth(ctx, collection, depth, folds, seed) for depth in chosen]


def _probe_depth(
    ctx: Context, collection: CollectionInfo, depth: DepthSpec, folds: int, seed: int
) -> DepthReport:
    data = labelled_vectors.load(ctx, collection, depth)
    rows = data.labelled
    x, y = data.x[rows], data.y[rows]
    k = usable_folds(y, folds, f"a probe on collection {collection.name!r}")
    assignment = stratified_folds(y, k, seed)
    held_out = out_of_fold_probabilities(x, y, len(data.classes), assignment, ctx, seed)
    tested = assignment >= 0
    report = classification_report(y[tested], held_out[tested].argmax(axis=1), data.classes)
    model = fit_linear(x, y, len(data.classes), ctx.backbones.device, seed=seed)
    n_test = int(tested.sum())
    metrics = report.as_dict() | {"folds": k, "n_train": len(y), "n_test": n_test, "c": model.c}
    with ctx.sessions.begin() as session:
        label_repository.save_probe(
            session,
            collection.id,
            StoredProbe(
                depth.name, data.classes, model.weight, model.bias, model.mean, model.scale, metrics
            ),
        )
    log.info(
        "probe %s/%s: accuracy %.3f macro-F1 %.3f (%d items, %d folds, C=%g)",
        collection.name,
        depth.name,
        report.accuracy,
        report.macro_f1,
        len(y),
        k,
        model.c,
    )
    return DepthReport(
        depth=depth.name,
        dim=depth.dim,
        accuracy=report.accuracy,
        macro_f1=report.macro_f1,
        n_train=len(y),
        n_test=n_test,
        folds=k,
        c=model.c,
        classes=data.classes,
        per_class=report.per_class,
        confusion=report.confusion,
    )


def stored_probe(ctx: Context, collection: CollectionInfo, depth: str = "") -> StoredProbe:
    """The probe stored for `depth`; without a depth, the most accurate stored probe."""
    name = collection.depth(depth).name if depth else ""
    with ctx.sessions() as session:
        return label_repository.best_probe(session, collection.id, collection.name, name)


def predict_probe(
    ctx: Context,
    collection_name: str,
    depth: str = "",
    ids: Sequence[int] = (),
    images: Sequence[tuple[str, bytes]] = (),
) -> tuple[StoredProbe, list[ProbePrediction]]:
    """Class probabilities from a stored probe for stored items (by id) and new images."""
    if not ids and not images:
        raise InvalidInput("nothing to predict", hint="give item ids or images")
    collection = get_collection(ctx, collection_name)
    probe = stored_probe(ctx, collection, depth)
    model = LinearModel(probe.weight, probe.bias, probe.mean, probe.scale, 0.0)
    spec = collection.depth(probe.depth)
    wanted = list(dict.fromkeys(int(i) for i in ids))
    with ctx.sessions() as session:
        uris = label_repository.item_uris(session, collection.id, wanted)
        missing = [i for i in wanted if i not in uris]
        if missing:
            raise missing_items(
                missing,
                collection_name,
                hint="ids come from `strata index` or `strata search` output",
            )
        found = {
            int(i): row
            for chunk_ids, matrix in repository.iter_vectors(
                session, collection.id, spec.name, spec.dim, np.array(wanted, np.int64)
            )
            for i, row in zip(chunk_ids, matrix, strict=True)
        }
    out: list[ProbePrediction] = []
    if wanted:
        present = [i for i in wanted if i in found]
        matrix = np.stack([found[i] for i in present]) if present else np.zeros((0, spec.dim))
        probabilities = dict(
            zip(present, model.probabilities(matrix, ctx.backbones.device), strict=True)
        )
        for item_id in wanted:
            if item_id in probabilities:
                out.append(ProbePrediction(uris[item_id], item_id, probabilities[item_id]))
            else:
                error = NotFound(
                    f"item {item_id} has no vector at depth {spec.name!r}",
                    hint="re-add the image so its vectors are computed",
                )
                out.append(ProbePrediction(uris[item_id], item_id, None, error))
    if images:
        embeddings = embed_images(ctx, images, collection=collection_name, depths=[spec.name])
        good = [e.vectors[spec.name] for e in embeddings if e.error is None]
        rows = iter(model.probabilities(np.stack(good), ctx.backbones.device) if good else [])
        for e in embeddings:
            out.append(ProbePrediction(e.uri, 0, None if e.error else next(rows), e.error))
    return probe, out
