"""Every tappable layer of a backbone, with channels and stride, found by one dummy pass.

Shapes come from the architecture alone (no weights needed), so `strata layers` works
even for a backbone whose weights are not installed yet.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable

import torch
from torch import nn

from indexer.backbones.registry import get_backbone
from indexer.backbones.spec import BackboneSpec, LayerInfo
from indexer.core.errors import NotFound, quote
from indexer.core.vocabulary import DEPTH_PRESETS

_lock = threading.Lock()


def layer_table(spec: BackboneSpec) -> list[LayerInfo]:
    """All modules whose output is a feature map (N,C,H,W) or a vector (N,C), in forward order."""
    with _lock:
        return list(_layer_table_cached(spec.name))


@functools.cache
def _layer_table_cached(name: str) -> tuple[LayerInfo, ...]:
    spec = get_backbone(name)
    # Shapes only: on the meta device nothing is allocated, initialised or computed, so
    # VGG-16's table takes milliseconds instead of seconds. The mode is thread-local.
    with torch.device("meta"):
        model = spec.architecture().eval()
        return tuple(_trace_shapes(model, spec))


def _trace_shapes(model: nn.Module, spec: BackboneSpec) -> list[LayerInfo]:
    size = spec.preprocessing.crop
    seen: dict[str, LayerInfo] = {}

    def hook_for(name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if not isinstance(output, torch.Tensor) or name in seen:
                return
            presets = tuple(d for d in DEPTH_PRESETS if spec.presets.get(d) == name)
            if output.dim() == 4 and output.shape[-1] > 1:
                # Valid-padding nets give odd sizes (AlexNet: 13 of 224): report the
                # nominal power-of-two reduction, as timm's feature_info does.
                stride = 2 ** round(math.log2(size / output.shape[-1]))
                seen[name] = LayerInfo(name, int(output.shape[1]), stride, presets)
            elif output.dim() == 2 or output.dim() == 4:  # a vector, or a 1x1 global pool
                seen[name] = LayerInfo(name, int(output.shape[1]), None, presets)

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in model.named_modules() if n]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, size, size))
    finally:
        for handle in handles:
            handle.remove()
    return list(seen.values())


def resolve_layer(spec: BackboneSpec, depth: str) -> LayerInfo:
    """The layer a depth names (a preset such as `semantics`, or any layer name)."""
    layer = spec.layer_for(depth)
    for info in layer_table(spec):
        if info.name == layer:
            return info
    raise NotFound(
        f"unknown layer or depth {quote(depth)} for backbone {quote(spec.name)}",
        hint=f"use a preset ({', '.join(spec.presets)}) or a layer name from "
        f"`strata layers --backbone {spec.name}`",
    )
