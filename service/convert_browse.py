"""Translation between the strata.v1.Browse messages and the library's records."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from indexer.catalog.browse import BackfillResult, ItemListing, Thumbnails
from indexer.catalog.projection import ProjectionResult
from service import convert
from service.generated.strata.v1 import browse_pb2 as pb
from service.generated.strata.v1 import strata_pb2


def thumbnails(ids: Sequence[int], found: Thumbnails) -> pb.GetThumbnailsResponse:
    """Thumbnails in the order asked (each id once); the ids without one are `missing`."""
    out = []
    for item_id in dict.fromkeys(int(i) for i in ids):
        thumb = found.found.get(item_id)
        if thumb is not None:
            out.append(
                pb.Thumbnail(
                    id=item_id,
                    media_type=thumb.media_type,
                    data=thumb.data,
                    width=thumb.width,
                    height=thumb.height,
                )
            )
    return pb.GetThumbnailsResponse(thumbnails=out, missing=found.missing)


def backfill(result: BackfillResult) -> pb.BackfillThumbnailsResponse:
    return pb.BackfillThumbnailsResponse(
        written=result.written,
        failed=[
            strata_pb2.AddImageResult(
                uri=str(item_id), id=item_id, status="failed", error=convert.error(exc)
            )
            for item_id, exc in result.failed
        ],
    )


def listing(result: ItemListing) -> pb.ListItemsResponse:
    return pb.ListItemsResponse(
        items=[convert.item(info) for info in result.items],
        next_page_token=result.next_page_token,
        total=result.total,
    )


def projection(result: ProjectionResult) -> pb.Projection:
    """Packed little-endian columns: ids as int64, then x0 y0 x1 y1 ... as float32."""
    return pb.Projection(
        collection=result.collection,
        depth=result.depth,
        method=result.method,
        count=len(result.ids),
        ids=np.asarray(result.ids, dtype="<i8").tobytes(),
        xy=np.asarray(result.xy, dtype="<f4").tobytes(),
        cached=result.cached,
        seconds=result.seconds,
        collection_version=result.version,
    )
