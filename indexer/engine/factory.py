"""Engines per backbone: `EngineFactory` builds (once) the engine for each set of taps.

`engine="auto"` picks OpenVINO on a CPU when it is installed and the graph converts, else
PyTorch; everything around the engine (decoding, batching, storage) is one code path.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from indexer.backbones.spec import BackboneSpec
from indexer.core.vocabulary import check_pooling
from indexer.engine.graph import TapGraph
from indexer.engine.openvino_engine import build_openvino_engine, openvino_available
from indexer.engine.options import Engine, EngineSettingError, RuntimeOptions
from indexer.engine.torch_engine import TorchEngine

log = logging.getLogger(__name__)


@dataclass
class EngineFactory:
    """Builds (once) and keeps the engine for each (layers, pooling, logits) of a backbone."""

    spec: BackboneSpec
    model: nn.Module
    device: torch.device
    weights_file: Path
    options: RuntimeOptions
    _engines: dict[tuple[tuple[str, ...], str, bool], Engine] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, layers: Sequence[str], pooling: str, with_logits: bool) -> Engine:
        key = (tuple(dict.fromkeys(layers)), check_pooling(pooling), with_logits)
        with self._lock:
            if key not in self._engines:
                self._engines[key] = self._build(*key)
            return self._engines[key]

    def _build(self, layers: tuple[str, ...], pooling: str, with_logits: bool) -> Engine:
        pre = self.spec.preprocessing
        graph = TapGraph(self.model, layers, pooling, with_logits, pre.mean, pre.std)
        graph = graph.to(self.device).eval()
        engine: Engine | None = None
        if self._use_openvino():
            try:
                engine = build_openvino_engine(self.spec, self.weights_file, graph, self.options)
            except Exception:
                if self.options.engine == "openvino":
                    raise
                log.warning(
                    "OpenVINO could not run %s; using PyTorch", self.spec.name, exc_info=True
                )
        if engine is None:
            engine = TorchEngine(graph, self.device, self.options.precision)
        log.info(
            "engine for %s taps %s (%s pooling%s): %s",
            self.spec.name,
            ",".join(layers),
            pooling,
            ", logits" if with_logits else "",
            engine.description,
        )
        return engine

    def _use_openvino(self) -> bool:
        engine = self.options.engine
        if engine == "torch":
            return False
        if self.device.type != "cpu":
            if engine == "openvino":
                raise EngineSettingError(
                    f"engine openvino runs on the CPU, but the device is {self.device}",
                    hint="use engine auto or torch on a GPU",
                )
            return False
        if not openvino_available():
            if engine == "openvino":
                raise EngineSettingError(
                    "engine openvino is selected but OpenVINO is not installed",
                    hint="pip install openvino, or set engine to auto or torch",
                )
            return False
        return True
