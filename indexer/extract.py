"""One batched forward pass that yields every tap a request needs, pooled and L2-normalised."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from indexer.backbones.loader import LoadedBackbone
from indexer.errors import InvalidInput

POOLINGS: tuple[str, ...] = ("avg", "max", "gem")
GEM_P = 3.0


@dataclass
class Features:
    """Per layer name, an (N, C) float32 array of unit vectors; logits when asked for."""

    vectors: dict[str, np.ndarray]
    logits: np.ndarray | None = None


class _StopForward(Exception):
    """Raised from a hook once every tap is captured, to skip the rest of the network."""


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


def to_batch(pixels: Sequence[np.ndarray]) -> torch.Tensor:
    """Stack HxWx3 uint8 arrays into an (N,H,W,3) uint8 tensor."""
    return torch.from_numpy(np.stack(pixels))


def extract(
    backbone: LoadedBackbone,
    batch: torch.Tensor,
    layers: Sequence[str],
    pooling: str = "avg",
    with_logits: bool = False,
) -> Features:
    """Run `batch` ((N,H,W,3) uint8) once through the backbone and tap `layers`."""
    check_pooling(pooling)
    wanted = list(dict.fromkeys(layers))
    modules = dict(backbone.model.named_modules())
    captured: dict[str, torch.Tensor] = {}

    def hook_for(name: str):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            if name not in captured:
                captured[name] = pool(output, pooling).float()
            if not with_logits and len(captured) == len(wanted):
                raise _StopForward

        return hook

    with backbone.lock:
        handles = [modules[name].register_forward_hook(hook_for(name)) for name in wanted]
        try:
            with torch.inference_mode():
                x = batch.to(backbone.device, non_blocking=True).permute(0, 3, 1, 2).float()
                x = (x - backbone.mean) / backbone.std
                logits = None
                with contextlib.suppress(_StopForward):
                    logits = _forward(backbone.model, x)
        finally:
            for handle in handles:
                handle.remove()
    vectors = {
        name: F.normalize(captured[name], dim=1).cpu().numpy().astype(np.float32, copy=False)
        for name in wanted
    }
    return Features(vectors, None if logits is None else logits.float().cpu().numpy())


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    # torchvision's Inception returns a namedtuple when aux logits are on in training.
    return out.logits if hasattr(out, "logits") else out
