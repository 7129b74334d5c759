"""Translation between the strata.v1 Labels service's messages and the library's records."""

from __future__ import annotations

from collections.abc import Sequence

from indexer.catalog.duplicates import DuplicatesResult
from indexer.learning import bootstrap, labels, probes
from indexer.store.label_repository import LabelRow
from service.convert import error
from service.generated.strata.v1 import labels_pb2 as pb
from service.generated.strata.v1 import strata_pb2


def label_assignments(items: Sequence[pb.LabelAssignment]) -> dict[int, list[str]]:
    wanted: dict[int, list[str]] = {}
    for entry in items:
        wanted.setdefault(entry.id, []).extend(entry.labels)
    return wanted


def method_scores(choice: bootstrap.Choice) -> list[pb.MethodScore]:
    return [
        pb.MethodScore(method=c.method, depth=c.depth, cv_accuracy=c.cv_accuracy)
        for c in choice.candidates
    ]


def exported(rows: Sequence[LabelRow]) -> pb.ExportLabelsResponse:
    return pb.ExportLabelsResponse(
        labels=[
            pb.ItemLabel(
                id=r.item_id, uri=r.uri, label=r.label, source=r.source, confidence=r.confidence
            )
            for r in rows
        ],
        csv=labels.to_csv(list(rows)),
    )


def depth_probe(r: probes.DepthReport) -> pb.DepthProbe:
    return pb.DepthProbe(
        depth=r.depth,
        dim=r.dim,
        accuracy=r.accuracy,
        macro_f1=r.macro_f1,
        n_train=r.n_train,
        n_test=r.n_test,
        folds=r.folds,
        c=r.c,
        classes=r.classes,
        per_class=[
            pb.ClassMetric(label=m.label, accuracy=m.accuracy, support=m.support)
            for m in r.per_class
        ],
        confusion=r.confusion.ravel().tolist(),
    )


def probe_prediction(p: probes.ProbePrediction, classes: Sequence[str]) -> pb.ProbePrediction:
    scores = []
    if p.probabilities is not None:
        order = (-p.probabilities).argsort(kind="stable")
        scores = [
            strata_pb2.ClassScore(label=classes[i], score=float(p.probabilities[i])) for i in order
        ]
    return pb.ProbePrediction(id=p.id, uri=p.uri, scores=scores, error=error(p.error))


def predicted(result: bootstrap.PredictResult) -> pb.PredictLabelsResponse:
    best = result.choice.best
    return pb.PredictLabelsResponse(
        method=best.method,
        depth=best.depth,
        cv_accuracy=best.cv_accuracy,
        predictions=[
            pb.LabelPrediction(id=p.id, uri=p.uri, label=p.label, confidence=p.confidence)
            for p in result.predictions
        ],
        candidates=method_scores(result.choice),
        stored=result.stored,
    )


def suggested(result: bootstrap.SuggestResult) -> pb.SuggestLabelsResponse:
    return pb.SuggestLabelsResponse(
        suggestions=[pb.Suggestion(id=s.id, uri=s.uri, score=s.score) for s in result.suggestions],
        depth=result.depth,
        method=result.method,
    )


def issues(result: bootstrap.IssuesResult) -> pb.LabelIssuesResponse:
    best = result.choice.best
    return pb.LabelIssuesResponse(
        issues=[
            pb.LabelIssue(id=i.id, uri=i.uri, label=i.label, suggested=i.suggested, score=i.score)
            for i in result.issues
        ],
        method=best.method,
        depth=best.depth,
        cv_accuracy=best.cv_accuracy,
    )


def duplicate_groups(result: DuplicatesResult) -> pb.DuplicatesResponse:
    return pb.DuplicatesResponse(
        groups=[
            pb.DuplicateGroup(members=[pb.DuplicateMember(id=m.id, uri=m.uri) for m in group])
            for group in result.groups
        ],
        depth=result.depth,
        threshold=result.threshold,
    )
