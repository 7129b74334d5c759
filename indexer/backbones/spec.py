"""The records that describe a backbone: preprocessing, weights and named depths."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from indexer.imaging.framing import Preprocessing


@dataclass(frozen=True)
class LayerInfo:
    """One tappable layer: its output channels and stride (None once spatially pooled)."""

    name: str
    channels: int
    stride: int | None
    presets: tuple[str, ...] = ()


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's pretrained weights live on disk, and how to say so when absent.

    `candidates` lists the places looked at, in order; `install_hint` tells a user how to
    put the file there; `load` fills an architecture built by `BackboneSpec.architecture`.
    """

    filename: str
    candidates: Callable[[], list[Path]]
    install_hint: str
    load: Callable[[nn.Module, Path], None]


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry: everything needed to build, feed and tap a pretrained CNN."""

    name: str
    description: str
    architecture: Callable[[], nn.Module]
    weights: WeightsSource
    preprocessing: Preprocessing
    #: depth preset ("edges", "parts", "semantics") -> real layer name in the model.
    presets: Mapping[str, str]
    #: ImageNet class names, index-aligned with the model's logits.
    categories: tuple[str, ...]
    #: The last layer that stays fp32 when precision `auto` runs the rest in bf16 (OpenVINO
    #: on a CPU with native bf16), chosen by measured cosine to fp32; None: fp32 throughout.
    fp32_through: str | None = None

    def layer_for(self, depth: str) -> str:
        """The layer a depth names: a preset's layer, or the name itself."""
        return self.presets.get(depth, depth)
