"""Top-k ImageNet classes from a backbone's own classifier head, with their WordNet ids and
hypernym paths and, when asked, the coarse categories: tags to bootstrap labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from indexer.backbones.wordnet import IMAGENET_CLASSES, Synset, hierarchy
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput, StrataError
from indexer.core.vocabulary import DEFAULT_BACKBONE, DEFAULT_POOLING, check_request_size
from indexer.engine.extract import embed_prepared
from indexer.imaging.prepare import PreparedImage

MAX_TOP_K = 1000


@dataclass(frozen=True)
class Prediction:
    uri: str
    top: list[tuple[str, float]]  # (ImageNet class name, probability), best first
    error: StrataError | None = None
    #: WordNet synset of each entry of `top` (empty for a head that is not ImageNet-1k's).
    synsets: list[Synset] = field(default_factory=list)
    #: Coarse categories by summed probability, best first (when asked for).
    coarse: list[tuple[Synset, float]] = field(default_factory=list)


def classify(
    ctx: Context,
    images: Sequence[tuple[str, bytes]],
    k: int = 5,
    backbone_name: str = DEFAULT_BACKBONE,
    coarse: int = 0,
) -> list[Prediction]:
    """Top-k classes per image; with `coarse` > 0, also that many coarse categories."""
    if not 1 <= k <= MAX_TOP_K:
        raise InvalidInput(f"k={k} is out of range", hint=f"use 1..{MAX_TOP_K}")
    if not 0 <= coarse <= MAX_TOP_K:
        raise InvalidInput(f"coarse={coarse} is out of range", hint=f"use 0..{MAX_TOP_K}")
    check_request_size(len(images), ctx.settings.max_images_per_request, "images")
    backbone = ctx.backbones.get(backbone_name)
    prepared = ctx.prepare_images(images, backbone, backbone.spec.preprocessing)
    good = [p for p in prepared if isinstance(p, PreparedImage)]
    features = embed_prepared(
        backbone, good, [], DEFAULT_POOLING, ctx.settings.batch_size, with_logits=True
    )
    logits = features.logits if features.logits is not None else np.zeros((0, 1000))
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    names = backbone.spec.categories
    tree = hierarchy() if len(names) == IMAGENET_CLASSES else None
    out: list[Prediction] = []
    row = 0
    for (uri, _), outcome in zip(images, prepared, strict=True):
        if isinstance(outcome, StrataError):
            out.append(Prediction(uri, [], outcome))
            continue
        top = np.argsort(-probabilities[row])[:k]
        out.append(
            Prediction(
                uri,
                [(names[i], float(probabilities[row, i])) for i in top],
                synsets=[tree.classes[i] for i in top] if tree else [],
                coarse=tree.coarse_scores(probabilities[row], coarse) if tree and coarse else [],
            )
        )
        row += 1
    return out
