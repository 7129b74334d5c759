"""Batched forward passes that yield every tap a request needs, pooled and L2-normalised.

The pass itself runs on the backbone's engine (indexer.engine.factory): eager PyTorch, or the
same graph compiled by OpenVINO on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from indexer.core.metrics import FORWARD_BATCH_IMAGES, IMAGES_EMBEDDED, timed_stage
from indexer.core.vocabulary import DEFAULT_POOLING, check_pooling
from indexer.engine.factory import canonical_layers
from indexer.engine.loader import LoadedBackbone
from indexer.imaging.prepare import PreparedImage


@dataclass
class Features:
    """Per layer name, an (N, C) float32 array of unit vectors; logits when asked for."""

    vectors: dict[str, np.ndarray]
    logits: np.ndarray | None = None


def to_batch(pixels: Sequence[np.ndarray | torch.Tensor]) -> torch.Tensor:
    """Stack HxWx3 uint8 images into an (N,H,W,3) uint8 tensor. Images decoded on the
    model's device (tensors) keep the batch there; CPU arrays join them."""
    on_device = [p for p in pixels if isinstance(p, torch.Tensor)]
    if not on_device:
        return torch.from_numpy(np.stack(pixels))
    device = on_device[0].device
    return torch.stack(
        [
            p.to(device) if isinstance(p, torch.Tensor) else torch.tensor(p, device=device)
            for p in pixels
        ]
    )


def extract(
    backbone: LoadedBackbone,
    batch: torch.Tensor | np.ndarray,
    layers: Sequence[str],
    pooling: str = DEFAULT_POOLING,
    with_logits: bool = False,
) -> Features:
    """Run `batch` ((N,H,W,3) uint8) once through the backbone and tap `layers`."""
    check_pooling(pooling)
    wanted = list(dict.fromkeys(layers))
    engine = backbone.engine(wanted, pooling, with_logits)  # built outside the lock below
    order = canonical_layers(wanted)  # the engine's output order
    pixels = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(np.asarray(batch))
    if len(pixels) == 0:
        raise ValueError("extract needs at least one image")
    with backbone.lock, timed_stage("forward"):  # the pass, not the wait for the lock
        outputs = engine.run(pixels)
    vectors = {name: outputs[order.index(name)] for name in wanted}
    return Features(vectors, outputs[len(order)] if with_logits else None)


def embed_prepared(
    backbone: LoadedBackbone,
    images: Sequence[PreparedImage],
    layers: Sequence[str],
    pooling: str,
    batch_size: int,
    with_logits: bool = False,
) -> Features:
    """Forward passes of at most `batch_size` images; results concatenated in order."""
    parts: list[Features] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        parts.append(
            extract(backbone, to_batch([i.pixels for i in chunk]), layers, pooling, with_logits)
        )
        IMAGES_EMBEDDED.labels(backbone.spec.name).inc(len(chunk))
        FORWARD_BATCH_IMAGES.observe(len(chunk))
    if not parts:
        return Features({layer: np.zeros((0, 0), np.float32) for layer in layers})
    vectors = {layer: np.concatenate([p.vectors[layer] for p in parts]) for layer in layers}
    logits = (
        np.concatenate([p.logits for p in parts if p.logits is not None]) if with_logits else None
    )
    return Features(vectors, logits)
