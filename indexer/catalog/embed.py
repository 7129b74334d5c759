"""Embed images without storing them: vectors for a backbone's depths, or a collection's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.catalog.collections import get_collection
from indexer.catalog.context import Context
from indexer.core.errors import StrataError
from indexer.core.vocabulary import (
    DEFAULT_BACKBONE,
    DEFAULT_POOLING,
    DEPTH_PRESETS,
    check_pooling,
    check_request_size,
)
from indexer.engine.extract import embed_prepared
from indexer.imaging.prepare import PreparedImage


@dataclass(frozen=True)
class Embedding:
    uri: str
    vectors: dict[str, np.ndarray]  # depth -> unit vector
    error: StrataError | None = None


def embed_images(
    ctx: Context,
    images: Sequence[tuple[str, bytes]],
    *,
    collection: str = "",
    backbone: str = "",
    depths: Sequence[str] = (),
    pooling: str = "",
) -> list[Embedding]:
    """With `collection`, use its backbone, pooling, framing and (by default) depths."""
    check_request_size(len(images), ctx.settings.max_images_per_request, "images")
    if collection:
        info = get_collection(ctx, collection)
        loaded = ctx.backbones.get(info.backbone)
        chosen = [info.depth(d) for d in depths] if depths else list(info.depths)
        layers = {d.name: d.layer for d in chosen}
        pooling = info.pooling
        pre = loaded.spec.preprocessing.framed(info.framing)
    else:
        loaded = ctx.backbones.get(backbone or DEFAULT_BACKBONE)
        layers = {d: loaded.layer(d).name for d in (depths or DEPTH_PRESETS)}
        pooling = check_pooling(pooling or DEFAULT_POOLING)
        pre = loaded.spec.preprocessing
    prepared = ctx.prepare_images(images, loaded, pre)
    good = [p for p in prepared if isinstance(p, PreparedImage)]
    features = embed_prepared(
        loaded, good, list(dict.fromkeys(layers.values())), pooling, ctx.settings.batch_size
    )
    out: list[Embedding] = []
    row = 0
    for (uri, _), outcome in zip(images, prepared, strict=True):
        if isinstance(outcome, StrataError):
            out.append(Embedding(uri, {}, outcome))
            continue
        out.append(Embedding(uri, {d: features.vectors[layer][row] for d, layer in layers.items()}))
        row += 1
    return out
