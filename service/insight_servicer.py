"""The Insight gRPC servicer: Grad-CAM explanations and the channels that vary most.
Protobuf in, library call in a worker thread, protobuf out; errors mapped by service.errors.
Both methods only read (service.auth lets read tokens call them)."""

from __future__ import annotations

import asyncio

import grpc

from indexer.catalog.context import Context
from indexer.insight import channels, explain
from service import convert_insight
from service.errors import unary
from service.generated.strata.v1 import insight_pb2 as pb
from service.generated.strata.v1 import insight_pb2_grpc as pb_grpc

INSIGHT_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Insight"].full_name


def add_insight_service(ctx: Context, server: grpc.aio.Server) -> None:
    pb_grpc.add_InsightServicer_to_server(InsightServicer(ctx), server)


class InsightServicer(pb_grpc.InsightServicer):
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @unary
    async def Explain(
        self, request: pb.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExplainResponse:
        target = request.WhichOneof("target")
        found = await asyncio.to_thread(
            explain.explain,
            self.ctx,
            request.collection,
            [(i.uri, i.image) for i in request.images],
            depth=request.depth,
            label=request.label if target == "label" else "",
            imagenet_class=request.imagenet_class if target == "imagenet_class" else "",
        )
        return pb.ExplainResponse(explanations=[convert_insight.explanation(e) for e in found])

    @unary
    async def Channels(
        self, request: pb.ChannelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ChannelsResponse:
        report = await asyncio.to_thread(
            channels.top_channels,
            self.ctx,
            request.collection,
            request.depth,
            channels=request.channels or channels.DEFAULT_CHANNELS,
            top=request.top or channels.DEFAULT_TOP,
        )
        return convert_insight.channels(report)
