"""Spatial pooling of a tapped feature map into one vector per image."""

from __future__ import annotations

import torch

GEM_P = 3.0


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
