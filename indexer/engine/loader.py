"""Loading backbones with their weights onto a device, once per process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from indexer.backbones.layers import resolve_layer
from indexer.backbones.registry import get_backbone
from indexer.backbones.spec import BackboneSpec, LayerInfo
from indexer.backbones.weights import resolve_weights_file
from indexer.engine.factory import EngineFactory
from indexer.engine.options import Engine, RuntimeOptions

log = logging.getLogger(__name__)


def resolve_device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


@dataclass
class LoadedBackbone:
    """A backbone in eval mode on its device, with the engines that run its taps."""

    spec: BackboneSpec
    model: nn.Module
    device: torch.device
    weights_file: Path
    engines: EngineFactory
    #: One forward pass at a time per model: hooks are per call, and one pass already uses
    #: every core.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def layer(self, depth: str) -> LayerInfo:
        return resolve_layer(self.spec, depth)

    def engine(self, layers: Sequence[str], pooling: str, with_logits: bool = False) -> Engine:
        return self.engines.get(layers, pooling, with_logits)


def load_backbone(
    spec: BackboneSpec,
    device: torch.device,
    weights_file: Path | None = None,
    options: RuntimeOptions | None = None,
) -> LoadedBackbone:
    options = options or RuntimeOptions()
    options.validate()
    path = resolve_weights_file(spec, weights_file)
    model = spec.architecture()
    spec.weights.load(model, path)
    # Inputs arrive as NHWC; channels-last weights avoid layout conversions on CPU and let
    # cuDNN pick its tensor-core kernels on GPU.
    model = model.eval().to(device).to(memory_format=torch.channels_last)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    log.info(
        "loaded backbone %s from %s on %s (engine %s)", spec.name, path, device, options.engine
    )
    return LoadedBackbone(
        spec=spec,
        model=model,
        device=device,
        weights_file=path,
        engines=EngineFactory(spec, model, device, path, options),
    )


class BackboneCache:
    """Loads each backbone on first use and keeps it; thread-safe."""

    def __init__(
        self,
        device: torch.device,
        weights_files: Mapping[str, Path] | None = None,
        options: RuntimeOptions | None = None,
    ):
        self.device = device
        self._weights_files = dict(weights_files or {})
        self._options = options or RuntimeOptions()
        self._loaded: dict[str, LoadedBackbone] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> LoadedBackbone:
        spec = get_backbone(name)
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = load_backbone(
                    spec, self.device, self._weights_files.get(name), self._options
                )
            return self._loaded[name]
