"""Translation between protobuf messages and the library's records."""

from __future__ import annotations

from indexer.backbones.spec import BackboneSpec, LayerInfo
from indexer.catalog.collections import CollectionInfo
from indexer.catalog.items import ItemInfo
from indexer.catalog.search import Filter, Hit, QueryResult
from indexer.core.errors import StrataError
from service.errors import status_for
from service.generated.strata.v1 import strata_pb2 as pb


def error(exc: StrataError | None) -> pb.Error | None:
    if exc is None:
        return None
    return pb.Error(code=status_for(exc).name, message=exc.message, hint=exc.hint or "")


def layer(info: LayerInfo) -> pb.Layer:
    return pb.Layer(
        name=info.name, channels=info.channels, stride=info.stride or 0, presets=list(info.presets)
    )


def backbone(spec: BackboneSpec, available: bool, hint: str) -> pb.Backbone:
    return pb.Backbone(
        name=spec.name,
        description=spec.description,
        weights_available=available,
        weights_hint=hint,
        input_size=spec.preprocessing.crop,
        presets=dict(spec.presets),
    )


def collection(info: CollectionInfo) -> pb.Collection:
    return pb.Collection(
        name=info.name,
        backbone=info.backbone,
        pooling=info.pooling,
        framing=info.framing,
        items=info.items,
        depths=[
            pb.DepthInfo(name=d.name, layer=d.layer, dim=d.dim, vectors=info.vectors.get(d.name, 0))
            for d in info.depths
        ],
    )


def item(info: ItemInfo) -> pb.Item:
    return pb.Item(
        id=info.id,
        uri=info.uri,
        content_hash=info.content_hash,
        width=info.width,
        height=info.height,
        labels=[
            pb.LabelValue(label=lb.label, source=lb.source, confidence=lb.confidence)
            for lb in info.labels
        ],
        metadata=info.metadata,
    )


def search_filter(message: pb.Filter) -> Filter:
    return Filter(labels_any=tuple(message.labels_any), metadata=dict(message.metadata))


def hit(value: Hit) -> pb.Hit:
    return pb.Hit(
        id=value.id,
        uri=value.uri,
        score=value.score,
        labels=list(value.labels),
        metadata=value.metadata,
    )


def query_result(result: QueryResult) -> pb.QueryResult:
    return pb.QueryResult(
        query=result.query,
        results=[
            pb.DepthHits(depth=depth, hits=[hit(h) for h in hits])
            for depth, hits in result.results.items()
        ],
    )
