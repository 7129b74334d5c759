"""Translation between the Insight service's protobuf messages and indexer.insight records."""

from __future__ import annotations

from indexer.insight.channels import ChannelsReport
from indexer.insight.explain import Explanation
from service import convert
from service.generated.strata.v1 import insight_pb2 as pb


def explanation(value: Explanation) -> pb.Explanation:
    heatmap = value.heatmap
    return pb.Explanation(
        uri=value.uri,
        target=value.target,
        score=value.score,
        depth=value.depth,
        layer=value.layer,
        heatmap=(
            pb.Heatmap(
                rows=heatmap.shape[0], cols=heatmap.shape[1], values=heatmap.ravel().tolist()
            )
            if heatmap is not None
            else None
        ),
        framed=value.framed,
        error=convert.error(value.error),
    )


def channels(report: ChannelsReport) -> pb.ChannelsResponse:
    return pb.ChannelsResponse(
        depth=report.depth,
        layer=report.layer,
        items=report.items,
        channels=[
            pb.Channel(
                index=c.index,
                variance=c.variance,
                items=[pb.ChannelItem(id=i.id, uri=i.uri, value=i.value) for i in c.items],
            )
            for c in report.channels
        ],
    )
