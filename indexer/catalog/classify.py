"""Top-k ImageNet classes from a backbone's own classifier head: tags to bootstrap labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput, StrataError
from indexer.core.vocabulary import DEFAULT_BACKBONE
from indexer.engine.extract import embed_prepared
from indexer.imaging.prepare import PreparedImage

MAX_TOP_K = 1000


@dataclass(frozen=True)
class Prediction:
    uri: str
    top: list[tuple[str, float]]  # (ImageNet class name, probability), best first
    error: StrataError | None = None


def classify(
    ctx: Context,
    images: Sequence[tuple[str, bytes]],
    k: int = 5,
    backbone_name: str = DEFAULT_BACKBONE,
) -> list[Prediction]:
    if not 1 <= k <= MAX_TOP_K:
        raise InvalidInput(f"k={k} is out of range", hint=f"use 1..{MAX_TOP_K}")
    if len(images) > ctx.settings.max_images_per_request:
        raise InvalidInput(
            f"{len(images)} images in one call exceeds the limit of "
            f"{ctx.settings.max_images_per_request}",
            hint="split them over several calls",
        )
    backbone = ctx.backbones.get(backbone_name)
    prepared = ctx.prepare_images(images, backbone, backbone.spec.preprocessing)
    good = [p for p in prepared if isinstance(p, PreparedImage)]
    features = embed_prepared(backbone, good, [], "avg", ctx.settings.batch_size, with_logits=True)
    logits = features.logits if features.logits is not None else np.zeros((0, 1000))
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    names = backbone.spec.categories
    out: list[Prediction] = []
    row = 0
    for (uri, _), outcome in zip(images, prepared, strict=True):
        if isinstance(outcome, StrataError):
            out.append(Prediction(uri, [], outcome))
            continue
        top = np.argsort(-probabilities[row])[:k]
        out.append(Prediction(uri, [(names[i], float(probabilities[row, i])) for i in top]))
        row += 1
    return out
