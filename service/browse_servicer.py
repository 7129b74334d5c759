"""The Browse gRPC servicer: thumbnails, paged item listings and 2-D projections for visual
clients (the web app, `strata items list`, `strata map`). Protobuf in, library call in a
worker thread, protobuf out; errors mapped by service.errors. Everything but
BackfillThumbnails only reads (service.auth lets read tokens call it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from indexer.catalog import browse, projection
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput, quote
from service import convert_browse
from service.errors import unary
from service.generated.strata.v1 import browse_pb2 as pb
from service.generated.strata.v1 import browse_pb2_grpc as pb_grpc

BROWSE_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Browse"].full_name


def add_browse_service(ctx: Context, server: grpc.aio.Server) -> None:
    pb_grpc.add_BrowseServicer_to_server(BrowseServicer(ctx), server)


class BrowseServicer(pb_grpc.BrowseServicer):
    def __init__(self, ctx: Context):
        self.ctx = ctx

    @unary
    async def GetThumbnails(
        self, request: pb.GetThumbnailsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetThumbnailsResponse:
        ids = list(request.ids)
        found = await asyncio.to_thread(browse.get_thumbnails, self.ctx, request.collection, ids)
        return convert_browse.thumbnails(ids, found)

    @unary
    async def BackfillThumbnails(
        self,
        request_iterator: AsyncIterator[pb.BackfillThumbnailsRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.BackfillThumbnailsResponse:
        """Images arrive as a stream; they are checked, thumbnailed and stored in batches of
        the per-call image limit, so memory stays bounded however long the stream."""
        batch_size = self.ctx.settings.max_images_per_request
        collection = ""
        batch: list[tuple[int, bytes]] = []
        written = 0
        failed: list[browse.BackfillResult] = []

        async def flush() -> None:
            nonlocal written
            if batch:
                result = await asyncio.to_thread(
                    browse.backfill_thumbnails, self.ctx, collection, list(batch)
                )
                written += result.written
                failed.append(result)
                batch.clear()

        async for request in request_iterator:
            if not collection:
                collection = request.collection
                if not collection:
                    raise InvalidInput(
                        "the first BackfillThumbnails message names no collection",
                        hint="set collection on the first message (StrataClient does)",
                    )
            elif request.collection and request.collection != collection:
                raise InvalidInput(
                    f"one BackfillThumbnails stream names two collections, {quote(collection)} "
                    f"and {quote(request.collection)}",
                    hint="backfill one collection per call",
                )
            batch.append((request.id, request.image))
            if len(batch) >= batch_size:
                await flush()
        await flush()
        return convert_browse.backfill(
            browse.BackfillResult(written, [f for result in failed for f in result.failed])
        )

    @unary
    async def ListItems(
        self, request: pb.ListItemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListItemsResponse:
        result = await asyncio.to_thread(
            browse.list_items,
            self.ctx,
            request.collection,
            page_size=request.page_size,
            page_token=request.page_token,
            order_by=request.order_by,
            labels_any=list(request.filter.labels_any),
            metadata=dict(request.filter.metadata),
            label_source=request.label_source,
            without_thumbnail=request.without_thumbnail,
        )
        return convert_browse.listing(result)

    @unary
    async def GetProjection(
        self, request: pb.GetProjectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Projection:
        result = await asyncio.to_thread(
            projection.get_projection, self.ctx, request.collection, request.depth, request.method
        )
        return convert_browse.projection(result)
