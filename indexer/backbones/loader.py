"""Loading backbones with their weights onto a device, once per process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from indexer.backbones.layers import resolve_layer
from indexer.backbones.registry import get_backbone
from indexer.backbones.spec import BackboneSpec, LayerInfo
from indexer.backbones.weights import resolve_weights_file

log = logging.getLogger(__name__)


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


@dataclass
class LoadedBackbone:
    """A backbone in eval mode on its device, with normalisation constants ready there."""

    spec: BackboneSpec
    model: nn.Module
    device: torch.device
    weights_file: Path
    mean: torch.Tensor
    std: torch.Tensor
    #: One forward pass at a time per model: hooks are per call, and torch already uses
    #: every core inside one pass.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def layer(self, depth: str) -> LayerInfo:
        return resolve_layer(self.spec, depth)


def load_backbone(
    spec: BackboneSpec, device: torch.device, weights_file: Path | None = None
) -> LoadedBackbone:
    path = resolve_weights_file(spec, weights_file)
    model = spec.architecture()
    spec.weights.load(model, path)
    model = model.eval().to(device)
    if device.type == "cpu":
        # Our inputs arrive as NHWC; keeping the weights channels-last avoids conversions.
        model = model.to(memory_format=torch.channels_last)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    pre = spec.preprocessing
    log.info("loaded backbone %s from %s on %s", spec.name, path, device)
    return LoadedBackbone(
        spec=spec,
        model=model,
        device=device,
        weights_file=path,
        mean=torch.tensor(pre.mean, device=device).view(1, 3, 1, 1) * 255.0,
        std=torch.tensor(pre.std, device=device).view(1, 3, 1, 1) * 255.0,
    )


class BackboneCache:
    """Loads each backbone on first use and keeps it; thread-safe."""

    def __init__(self, device: torch.device, weights_files: Mapping[str, Path] | None = None):
        self.device = device
        self._weights_files = dict(weights_files or {})
        self._loaded: dict[str, LoadedBackbone] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> LoadedBackbone:
        spec = get_backbone(name)
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = load_backbone(spec, self.device, self._weights_files.get(name))
            return self._loaded[name]
