"""Translation between strata.v1 protobuf messages and the library's records: every
mapping of the Strata service is here (the Labels service's is in convert_labels)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from indexer.backbones.spec import BackboneSpec, LayerInfo
from indexer.backbones.wordnet import Synset
from indexer.catalog import classify, embed, ingest
from indexer.catalog.collections import CollectionInfo
from indexer.catalog.items import ItemInfo
from indexer.catalog.search import Filter, Query, QueryResult
from indexer.core.errors import InvalidInput, StrataError
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
            pb.DepthInfo(
                name=d.name,
                layer=d.layer,
                dim=d.dim,
                vectors=info.vectors.get(d.name, 0),
                index_vectors=info.index_vectors.get(d.name, 0),
            )
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


def search_response(results: Sequence[QueryResult]) -> pb.SearchResponse:
    """Filled in place (`add`; labels and metadata only when there are any): building each
    Hit from keyword arguments and copying it into its parent cost 3x as much, on the event
    loop, for every search's 30 hits."""
    response = pb.SearchResponse()
    for result in results:
        message = response.queries.add(query=result.query)
        for depth, hits in result.results.items():
            depth_hits = message.results.add(depth=depth)
            for value in hits:
                hit = depth_hits.hits.add(id=value.id, uri=value.uri, score=value.score)
                if value.labels:
                    hit.labels.extend(value.labels)
                if value.metadata:
                    hit.metadata.update(value.metadata)
    return response


def image_input(request: pb.AddImageRequest) -> ingest.ImageInput:
    return ingest.ImageInput(
        request.uri, request.image, tuple(request.labels), dict(request.metadata), request.tags
    )


def add_result(result: ingest.AddResult) -> pb.AddImageResult:
    return pb.AddImageResult(
        uri=result.uri,
        id=result.item_id or 0,
        status=result.status,
        error=error(result.error),
    )


def refused(uri: str, exc: StrataError) -> pb.AddImageResult:
    return pb.AddImageResult(uri=uri, status="failed", error=error(exc))


def query(message: pb.Query, position: int) -> Query:
    kind = message.WhichOneof("source")
    name = message.name or f"query {position}"
    if kind == "image":
        return Query(name, image=message.image)
    if kind == "item_id":
        return Query(name, item_id=message.item_id)
    if kind == "vector":
        return Query(name, vector=np.asarray(message.vector.values, dtype=np.float32))
    raise InvalidInput(f"query {name!r} is empty", hint="set image, item_id or vector")


def named_images(images: Sequence[pb.NamedImage]) -> list[tuple[str, bytes]]:
    return [(i.uri, i.image) for i in images]


def embedding(value: embed.Embedding) -> pb.Embedding:
    return pb.Embedding(
        uri=value.uri,
        vectors=[pb.DepthVector(depth=d, values=v.tolist()) for d, v in value.vectors.items()],
        error=error(value.error),
    )


def class_score(label: str, score: float, synset: Synset | None) -> pb.ClassScore:
    if synset is None:
        return pb.ClassScore(label=label, score=score)
    return pb.ClassScore(label=label, score=score, wnid=synset.wnid, path=list(synset.path))


def prediction(value: classify.Prediction) -> pb.Prediction:
    """Top classes with their WordNet id and path, and the coarse categories when asked."""
    synsets: list[Synset | None] = [*value.synsets] or [None] * len(value.top)
    return pb.Prediction(
        uri=value.uri,
        top=[
            class_score(label, score, synset)
            for (label, score), synset in zip(value.top, synsets, strict=True)
        ],
        coarse=[class_score(s.name, total, s) for s, total in value.coarse],
        error=error(value.error),
    )
