"""The Strata gRPC servicer: protobuf in, library call (in a worker thread), protobuf out."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator

import grpc

from indexer.backbones.layers import layer_table
from indexer.backbones.registry import get_backbone, list_backbones
from indexer.backbones.weights import resolve_weights_file
from indexer.catalog import classify, collections, embed, ingest, items, search
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput, WeightsMissing
from indexer.core.vocabulary import (
    DEFAULT_BACKBONE,
    DEFAULT_CLASSIFY_K,
    DEFAULT_FRAMING,
    DEFAULT_POOLING,
    DEFAULT_SEARCH_K,
    DEPTH_PRESETS,
)
from service import convert
from service.batcher import DynamicBatcher
from service.errors import streaming, unary
from service.generated.strata.v1 import strata_pb2 as pb
from service.generated.strata.v1 import strata_pb2_grpc as pb_grpc
from service.settings import ServiceSettings

log = logging.getLogger(__name__)

#: How long the AddImages batcher waits for more images before running a partial batch.
BATCH_WAIT_S = 0.02

#: Searches that may share a forward pass: collection, depths, k, serialized filter.
SearchKey = tuple[str, tuple[str, ...], int, bytes]


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class StrataServicer(pb_grpc.StrataServicer):
    def __init__(self, ctx: Context, settings: ServiceSettings):
        self.ctx = ctx
        on_gpu = ctx.backbones.device.type == "cuda"
        self.pipeline_depth = settings.ingest_pipeline_depth or (2 if on_gpu else 1)
        # Concurrent single-image searches share one forward pass and one FAISS search.
        self.search_batcher: DynamicBatcher[SearchKey, search.Query, search.QueryResult] = (
            DynamicBatcher(
                self._search_batch,
                max_batch=min(settings.search_batch_max, ctx.settings.max_images_per_request),
                max_wait_s=settings.search_batch_wait_s,
                concurrency=settings.search_batch_concurrency,
                name="search-batcher",
            )
        )

    # -- backbones ------------------------------------------------------------------------

    @unary
    async def ListBackbones(
        self, request: pb.ListBackbonesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListBackbonesResponse:
        out = []
        for spec in list_backbones():
            # File names only: a caller has no business learning the server's folders.
            try:
                path = resolve_weights_file(spec, self.ctx.settings.weights_files.get(spec.name))
                out.append(convert.backbone(spec, True, f"weights file {path.name} found"))
            except WeightsMissing:
                hint = f"{spec.weights.filename} is not on the server. {spec.weights.install_hint}"
                out.append(convert.backbone(spec, False, hint))
        return pb.ListBackbonesResponse(backbones=out)

    @unary
    async def ListLayers(
        self, request: pb.ListLayersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLayersResponse:
        spec = get_backbone(request.backbone or DEFAULT_BACKBONE)
        layers = await asyncio.to_thread(layer_table, spec)
        return pb.ListLayersResponse(backbone=spec.name, layers=[convert.layer(x) for x in layers])

    # -- collections ----------------------------------------------------------------------

    @unary
    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Collection:
        info = await asyncio.to_thread(
            collections.create_collection,
            self.ctx,
            request.name,
            request.backbone or DEFAULT_BACKBONE,
            list(request.depths) or list(DEPTH_PRESETS),
            request.pooling or DEFAULT_POOLING,
            request.framing or DEFAULT_FRAMING,
        )
        return convert.collection(info)

    @unary
    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCollectionsResponse:
        infos = await asyncio.to_thread(collections.list_collections, self.ctx)
        return pb.ListCollectionsResponse(collections=[convert.collection(i) for i in infos])

    @unary
    async def GetCollection(
        self, request: pb.GetCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Collection:
        info = await asyncio.to_thread(collections.get_collection, self.ctx, request.name, True)
        return convert.collection(info)

    @unary
    async def DeleteCollection(
        self, request: pb.DeleteCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteCollectionResponse:
        await asyncio.to_thread(collections.delete_collection, self.ctx, request.name)
        return pb.DeleteCollectionResponse(name=request.name)

    # -- items ----------------------------------------------------------------------------

    @streaming
    async def AddImages(
        self, request_iterator: AsyncIterator[pb.AddImageRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.AddImageResult]:
        """Read the stream in the background and embed in batches as images arrive, so
        receiving, decoding, the forward pass and writing overlap; one result per image, in
        order. An image is acknowledged only once its batch is committed."""
        queue: asyncio.Queue[pb.AddImageRequest | None] = asyncio.Queue(
            maxsize=4 * self.ctx.settings.batch_size
        )

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await queue.put(request)
            finally:
                await queue.put(None)

        reader = asyncio.create_task(read())
        in_flight: deque[asyncio.Task[list[pb.AddImageResult]]] = deque()
        reading: asyncio.Task[tuple[list[pb.AddImageRequest], bool]] | None = None
        collection = ""
        finished = False
        try:
            while True:
                if reading is None and not finished and len(in_flight) < self.pipeline_depth:
                    reading = asyncio.create_task(self._next_batch(queue))
                waiting = [t for t in (reading, in_flight[0] if in_flight else None) if t]
                if not waiting:
                    break
                # Whichever comes first: a client that waits for an answer before sending
                # more must get it while the next batch is still being gathered.
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if in_flight and in_flight[0] in done:
                    for result in in_flight.popleft().result():
                        yield result
                if reading is not None and reading in done:
                    batch, finished = reading.result()
                    reading = None
                    if batch:
                        collection = collection or batch[0].collection
                        if not collection:
                            raise InvalidInput(
                                "the first AddImages message must name the collection",
                                hint="set `collection` on the first request of the stream",
                            )
                        in_flight.append(asyncio.create_task(self._add_batch(collection, batch)))
        finally:
            reader.cancel()
            # A client gone mid-stream fails the reader (AbortError): the stream's end says
            # so already; retrieve it, or each such stream logs "exception never retrieved".
            reader.add_done_callback(_retrieve)
            for task in (reading, *in_flight):
                if task is not None:
                    task.cancel()

    async def _next_batch(
        self, queue: asyncio.Queue[pb.AddImageRequest | None]
    ) -> tuple[list[pb.AddImageRequest], bool]:
        first = await queue.get()
        if first is None:
            return [], True
        batch = [first]
        limit = min(self.ctx.settings.batch_size, self.ctx.settings.max_images_per_request)
        while len(batch) < limit:
            try:
                nxt = await asyncio.wait_for(queue.get(), BATCH_WAIT_S)
            except TimeoutError:
                break
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False

    async def _add_batch(
        self, collection: str, batch: list[pb.AddImageRequest]
    ) -> list[pb.AddImageResult]:
        inputs: list[ingest.ImageInput] = []
        out: list[tuple[str, InvalidInput | None]] = []  # uri, refused before the library
        for request in batch:
            if request.collection and request.collection != collection:
                out.append(
                    (
                        request.uri,
                        InvalidInput(
                            f"{request.uri!r} names collection {request.collection!r} inside a "
                            f"stream for {collection!r}",
                            hint="use one stream per collection",
                        ),
                    )
                )
                continue
            inputs.append(convert.image_input(request))
            out.append((request.uri, None))
        results = iter(await asyncio.to_thread(ingest.add_images, self.ctx, collection, inputs))
        messages = []
        for uri, refused in out:
            if refused is not None:
                messages.append(convert.refused(uri, refused))
            else:
                messages.append(convert.add_result(next(results)))
        return messages

    @unary
    async def GetItem(
        self, request: pb.GetItemRequest, context: grpc.aio.ServicerContext
    ) -> pb.Item:
        info = await asyncio.to_thread(items.get_item, self.ctx, request.collection, request.id)
        return convert.item(info)

    @unary
    async def DeleteItems(
        self, request: pb.DeleteItemsRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteItemsResponse:
        deleted = await asyncio.to_thread(
            items.delete_items, self.ctx, request.collection, list(request.ids)
        )
        return pb.DeleteItemsResponse(deleted=deleted)

    # -- search, embed, classify ----------------------------------------------------------

    @unary
    async def Search(
        self, request: pb.SearchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchResponse:
        queries = [convert.query(q, i) for i, q in enumerate(request.queries)]
        if len(queries) == 1 and queries[0].image is not None:
            where = request.filter.SerializeToString(deterministic=True)
            key = (request.collection, tuple(request.depths), request.k or DEFAULT_SEARCH_K, where)
            results = [await self.search_batcher.submit(key, queries[0])]
        else:
            results = await asyncio.to_thread(
                search.search,
                self.ctx,
                request.collection,
                queries,
                list(request.depths),
                request.k or DEFAULT_SEARCH_K,
                convert.search_filter(request.filter),
            )
        return convert.search_response(results)

    def _search_batch(
        self, key: SearchKey, queries: list[search.Query]
    ) -> list[search.QueryResult]:
        collection, depths, k, where = key
        return search.search(
            self.ctx,
            collection,
            queries,
            list(depths),
            k,
            convert.search_filter(pb.Filter.FromString(where)),
        )

    @unary
    async def Embed(
        self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> pb.EmbedResponse:
        embeddings = await asyncio.to_thread(
            embed.embed_images,
            self.ctx,
            convert.named_images(request.images),
            collection=request.collection,
            backbone=request.backbone,
            depths=list(request.depths),
            pooling=request.pooling,
        )
        return pb.EmbedResponse(embeddings=[convert.embedding(e) for e in embeddings])

    @unary
    async def Classify(
        self, request: pb.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ClassifyResponse:
        predictions = await asyncio.to_thread(
            classify.classify,
            self.ctx,
            convert.named_images(request.images),
            request.k or DEFAULT_CLASSIFY_K,
            request.backbone or DEFAULT_BACKBONE,
            request.coarse,
        )
        return pb.ClassifyResponse(predictions=[convert.prediction(p) for p in predictions])
