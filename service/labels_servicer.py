"""The Labels gRPC servicer: labels, linear probes, bootstrapping and duplicates.
Protobuf in, library call in a worker thread, protobuf out; errors mapped by service.errors."""

from __future__ import annotations

import asyncio

import grpc

from indexer.catalog import duplicates
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput
from indexer.learning import bootstrap, labels, probes
from service import convert
from service.errors import unary
from service.generated.strata.v1 import labels_pb2 as pb
from service.generated.strata.v1 import labels_pb2_grpc as pb_grpc
from service.generated.strata.v1 import strata_pb2

LABELS_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Labels"].full_name
DEFAULT_SUGGESTIONS = 10


def add_labels_service(ctx: Context, server: grpc.aio.Server) -> None:
    pb_grpc.add_LabelsServicer_to_server(LabelsServicer(ctx), server)


def _choice(choice: bootstrap.Choice) -> list[pb.MethodScore]:
    return [
        pb.MethodScore(method=c.method, depth=c.depth, cv_accuracy=c.cv_accuracy)
        for c in choice.candidates
    ]


class LabelsServicer(pb_grpc.LabelsServicer):
    def __init__(self, ctx: Context):
        self.ctx = ctx

    # -- labels ---------------------------------------------------------------------------

    @unary
    async def SetLabels(
        self, request: pb.SetLabelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetLabelsResponse:
        wanted: dict[int, list[str]] = {}
        for entry in request.items:
            wanted.setdefault(entry.id, []).extend(entry.labels)
        written = await asyncio.to_thread(labels.set_labels, self.ctx, request.collection, wanted)
        return pb.SetLabelsResponse(labels=written)

    @unary
    async def ClearLabels(
        self, request: pb.ClearLabelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClearLabelsResponse:
        if request.all == bool(request.ids):
            raise InvalidInput(
                "clearing labels needs either item ids or `all`, not both",
                hint="name the items, or set all to clear every label of the collection",
            )
        ids = None if request.all else list(request.ids)
        cleared = await asyncio.to_thread(
            labels.clear_labels, self.ctx, request.collection, ids, request.source
        )
        return pb.ClearLabelsResponse(cleared=cleared)

    @unary
    async def ImportLabels(
        self, request: pb.ImportLabelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ImportLabelsResponse:
        result = await asyncio.to_thread(
            labels.import_csv, self.ctx, request.collection, request.csv, request.key
        )
        return pb.ImportLabelsResponse(items=result.items, labels=result.labels)

    @unary
    async def ExportLabels(
        self, request: pb.ExportLabelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExportLabelsResponse:
        rows = await asyncio.to_thread(
            labels.export_labels, self.ctx, request.collection, request.source
        )
        return pb.ExportLabelsResponse(
            labels=[
                pb.ItemLabel(
                    id=r.item_id,
                    uri=r.uri,
                    label=r.label,
                    source=r.source,
                    confidence=r.confidence,
                )
                for r in rows
            ],
            csv=labels.to_csv(rows),
        )

    # -- probes ---------------------------------------------------------------------------

    @unary
    async def Probe(
        self, request: pb.ProbeRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProbeResponse:
        reports = await asyncio.to_thread(
            probes.run_probes,
            self.ctx,
            request.collection,
            list(request.depths),
            request.folds or probes.DEFAULT_FOLDS,
            request.seed,
        )
        return pb.ProbeResponse(
            depths=[
                pb.DepthProbe(
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
                for r in reports
            ]
        )

    @unary
    async def PredictProbe(
        self, request: pb.PredictProbeRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictProbeResponse:
        probe, predictions = await asyncio.to_thread(
            probes.predict_probe,
            self.ctx,
            request.collection,
            request.depth,
            list(request.ids),
            [(i.uri, i.image) for i in request.images],
        )
        out = []
        for p in predictions:
            scores = []
            if p.probabilities is not None:
                order = (-p.probabilities).argsort(kind="stable")
                scores = [
                    strata_pb2.ClassScore(label=probe.classes[i], score=float(p.probabilities[i]))
                    for i in order
                ]
            out.append(
                pb.ProbePrediction(id=p.id, uri=p.uri, scores=scores, error=convert.error(p.error))
            )
        return pb.PredictProbeResponse(depth=probe.depth, classes=probe.classes, predictions=out)

    # -- bootstrapping --------------------------------------------------------------------

    @unary
    async def PredictLabels(
        self, request: pb.PredictLabelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictLabelsResponse:
        result = await asyncio.to_thread(
            bootstrap.predict_labels,
            self.ctx,
            request.collection,
            list(request.depths),
            list(request.methods),
            request.folds or probes.DEFAULT_FOLDS,
            request.seed,
            request.dry_run,
        )
        best = result.choice.best
        return pb.PredictLabelsResponse(
            method=best.method,
            depth=best.depth,
            cv_accuracy=best.cv_accuracy,
            predictions=[
                pb.LabelPrediction(id=p.id, uri=p.uri, label=p.label, confidence=p.confidence)
                for p in result.predictions
            ],
            candidates=_choice(result.choice),
            stored=result.stored,
        )

    @unary
    async def SuggestLabels(
        self, request: pb.SuggestLabelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SuggestLabelsResponse:
        result = await asyncio.to_thread(
            bootstrap.suggest_labels,
            self.ctx,
            request.collection,
            request.n or DEFAULT_SUGGESTIONS,
            request.depth,
            dict(request.metadata),
            request.folds or probes.DEFAULT_FOLDS,
            request.seed,
        )
        return pb.SuggestLabelsResponse(
            suggestions=[
                pb.Suggestion(id=s.id, uri=s.uri, score=s.score) for s in result.suggestions
            ],
            depth=result.depth,
            method=result.method,
        )

    @unary
    async def LabelIssues(
        self, request: pb.LabelIssuesRequest, context: grpc.aio.ServicerContext
    ) -> pb.LabelIssuesResponse:
        result = await asyncio.to_thread(
            bootstrap.label_issues,
            self.ctx,
            request.collection,
            list(request.depths),
            list(request.methods),
            request.folds or probes.DEFAULT_FOLDS,
            request.seed,
        )
        best = result.choice.best
        return pb.LabelIssuesResponse(
            issues=[
                pb.LabelIssue(
                    id=i.id, uri=i.uri, label=i.label, suggested=i.suggested, score=i.score
                )
                for i in result.issues
            ],
            method=best.method,
            depth=best.depth,
            cv_accuracy=best.cv_accuracy,
        )

    @unary
    async def Duplicates(
        self, request: pb.DuplicatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.DuplicatesResponse:
        result = await asyncio.to_thread(
            duplicates.find_duplicates,
            self.ctx,
            request.collection,
            request.depth,
            request.threshold or duplicates.DEFAULT_THRESHOLD,
        )
        return pb.DuplicatesResponse(
            groups=[
                pb.DuplicateGroup(members=[pb.DuplicateMember(id=m.id, uri=m.uri) for m in group])
                for group in result.groups
            ],
            depth=result.depth,
            threshold=result.threshold,
        )
