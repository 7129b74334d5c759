"""Client methods for the Browse service (thumbnails, item listing, projection), mixed into
StrataClient.

with StrataClient() as client:
    page = client.list_items("photos", page_size=50, order_by="-confidence")
    thumbs = client.get_thumbnails("photos", [item.id for item in page.items])
    projection = client.get_projection("photos", depth="semantics")
    ids = numpy.frombuffer(projection.ids, "<i8")
    xy = numpy.frombuffer(projection.xy, "<f4").reshape(-1, 2)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import grpc

from service.generated.strata.v1 import browse_pb2 as pb
from service.generated.strata.v1 import browse_pb2_grpc as pb_grpc
from service.generated.strata.v1 import strata_pb2


class BrowseClientMixin:
    """Needs `_channel` (a grpc.Channel) and `_call(method, request)` from its host."""

    _channel: grpc.Channel
    _browse_stub: pb_grpc.BrowseStub | None = None

    def _call(self, method: Any, request: Any) -> Any:
        raise NotImplementedError

    @property
    def browse_stub(self) -> pb_grpc.BrowseStub:
        if self._browse_stub is None:
            self._browse_stub = pb_grpc.BrowseStub(self._channel)
        return self._browse_stub

    def get_thumbnails(self, collection: str, ids: Sequence[int]) -> pb.GetThumbnailsResponse:
        """Thumbnails of `ids` (in the order asked); ids without one are in `missing`."""
        request = pb.GetThumbnailsRequest(collection=collection, ids=[int(i) for i in ids])
        return self._call(self.browse_stub.GetThumbnails, request)

    def list_items(
        self,
        collection: str,
        page_size: int = 100,
        page_token: str = "",
        order_by: str = "id",
        labels_any: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
        label_source: str = "",
        *,
        without_thumbnail: bool = False,
    ) -> pb.ListItemsResponse:
        """One page of items; pass `next_page_token` back for the next (empty = last page).
        `without_thumbnail` lists only the items whose thumbnail is still to be backfilled."""
        request = pb.ListItemsRequest(
            collection=collection,
            page_size=page_size,
            page_token=page_token,
            order_by=order_by,
            filter=strata_pb2.Filter(labels_any=list(labels_any), metadata=dict(metadata or {})),
            label_source=label_source,
            without_thumbnail=without_thumbnail,
        )
        return self._call(self.browse_stub.ListItems, request)

    def get_projection(
        self, collection: str, depth: str = "", method: str = "pca"
    ) -> pb.Projection:
        """2-D coordinates of every item at `depth` (ids: <i8, xy: <f4 pairs in [-1, 1])."""
        request = pb.GetProjectionRequest(collection=collection, depth=depth, method=method)
        return self._call(self.browse_stub.GetProjection, request)

    def backfill_thumbnails(
        self, collection: str, images: Iterable[tuple[int, bytes]]
    ) -> pb.BackfillThumbnailsResponse:
        """Stream (item id, original image bytes) pairs; each is checked against the item's
        content hash before its thumbnail is stored."""

        def requests() -> Iterator[pb.BackfillThumbnailsRequest]:
            for item_id, data in images:
                yield pb.BackfillThumbnailsRequest(
                    collection=collection, id=int(item_id), image=data
                )

        # A stream-unary stub takes the request iterator where a unary one takes a request.
        return self._call(self.browse_stub.BackfillThumbnails, requests())
