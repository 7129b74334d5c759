"""Translation between the Insight service's protobuf messages and indexer.insight records
(and the WordNet fields of Classify's answer)."""

from __future__ import annotations

from indexer.backbones.wordnet import Synset
from indexer.catalog import classify
from indexer.insight.channels import ChannelsReport
from indexer.insight.explain import Explanation
from service import convert
from service.generated.strata.v1 import insight_pb2 as pb
from service.generated.strata.v1 import strata_pb2


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


def class_score(label: str, score: float, synset: Synset | None) -> strata_pb2.ClassScore:
    if synset is None:
        return strata_pb2.ClassScore(label=label, score=score)
    return strata_pb2.ClassScore(label=label, score=score, wnid=synset.wnid, path=list(synset.path))


def prediction(value: classify.Prediction) -> strata_pb2.Prediction:
    """Classify's answer with each class's WordNet id and path, and the coarse categories."""
    synsets: list[Synset | None] = [*value.synsets] or [None] * len(value.top)
    return strata_pb2.Prediction(
        uri=value.uri,
        top=[
            class_score(label, score, synset)
            for (label, score), synset in zip(value.top, synsets, strict=True)
        ],
        coarse=[class_score(s.name, total, s) for s, total in value.coarse],
        error=convert.error(value.error),
    )
