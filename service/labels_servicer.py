"""The Labels gRPC servicer: labels, linear probes, bootstrapping and duplicates.
Protobuf in, library call in a worker thread, protobuf out; errors mapped by service.errors."""

from __future__ import annotations

import asyncio

import grpc

from indexer.catalog import duplicates
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput
from indexer.core.vocabulary import DEFAULT_FOLDS, DEFAULT_SUGGESTIONS
from indexer.learning import bootstrap, labels, probes
from service import convert, convert_labels
from service.errors import unary
from service.generated.strata.v1 import labels_pb2 as pb
from service.generated.strata.v1 import labels_pb2_grpc as pb_grpc

LABELS_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Labels"].full_name


def add_labels_service(ctx: Context, server: grpc.aio.Server) -> None:
    pb_grpc.add_LabelsServicer_to_server(LabelsServicer(ctx), server)


class LabelsServicer(pb_grpc.LabelsServicer):
    """In proto3 a number left unset arrives as 0, so 0 means the default here (`folds`, `n`,
    `threshold`): `strata labels` and `strata duplicates` refuse an explicit 0 before it is
    sent (service/cli/labels.py), as StrataClient.suggest_labels does for n; values out of
    range otherwise are refused by the library."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    # -- labels ---------------------------------------------------------------------------

    @unary
    async def SetLabels(
        self, request: pb.SetLabelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.SetLabelsResponse:
        wanted = convert_labels.label_assignments(request.items)
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
        return convert_labels.exported(rows)

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
            request.folds or DEFAULT_FOLDS,
            request.seed,
        )
        return pb.ProbeResponse(depths=[convert_labels.depth_probe(r) for r in reports])

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
            convert.named_images(request.images),
        )
        out = [convert_labels.probe_prediction(p, probe.classes) for p in predictions]
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
            request.folds or DEFAULT_FOLDS,
            request.seed,
            request.dry_run,
        )
        return convert_labels.predicted(result)

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
            request.folds or DEFAULT_FOLDS,
            request.seed,
        )
        return convert_labels.suggested(result)

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
            request.folds or DEFAULT_FOLDS,
            request.seed,
        )
        return convert_labels.issues(result)

    @unary
    async def Duplicates(
        self, request: pb.DuplicatesRequest, context: grpc.aio.ServicerContext
    ) -> pb.DuplicatesResponse:
        result = await asyncio.to_thread(
            duplicates.find_duplicates,
            self.ctx,
            request.collection,
            request.depth,
            request.threshold or None,  # unset: the depth's default (measured or calibrated)
        )
        return convert_labels.duplicate_groups(result)
