"""Spatial pooling of a tapped feature map into one vector per image."""

from __future__ import annotations

import torch

from indexer.errors import InvalidInput

POOLINGS: tuple[str, ...] = ("avg", "max", "gem")
GEM_P = 3.0


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise InvalidInput(
            f"unknown pooling {pooling!r}", hint=f"choose one of: {', '.join(POOLINGS)}"
        )
    return pooling


def pool(feature: torch.Tensor, pooling: str) -> torch.Tensor:
    """(N,C,H,W) -> (N,C); vectors pass through."""
    if feature.dim() == 2:
        return feature
    if feature.dim() != 4:
        return feature.flatten(1)
    if pooling == "avg":
        return feature.mean(dim=(2, 3))
    if pooling == "max":
        return feature.amax(dim=(2, 3))
    # GeM (Radenović et al.): a learnable-in-principle p between avg (1) and max (inf).
    return feature.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
