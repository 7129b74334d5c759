"""Engines per backbone: `EngineFactory` builds (once) the engine for each set of taps.

`engine="auto"` picks OpenVINO on a CPU when it is installed and the graph converts, else
PyTorch; everything around the engine (decoding, batching, storage) is one code path.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
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


#: Engines kept per backbone (least recently used dropped first): each OpenVINO engine
#: costs ~40 MB of memory, so Embed calls naming ever new layer sets must not grow without
#: bound. A collection's own set is used on every ingest and search, so it stays.
MAX_ENGINES = 8

EngineKey = tuple[tuple[str, ...], str, bool]


def canonical_layers(layers: Sequence[str]) -> tuple[str, ...]:
    """One order for a set of layers, so [a, b] and [b, a] share an engine; engines return
    their outputs in this order."""
    return tuple(sorted(set(layers)))


@dataclass
class EngineFactory:
    """Builds and keeps (up to MAX_ENGINES, LRU) the engine for each (layers, pooling,
    logits) of a backbone. A build (seconds) runs outside the factory's lock, so calls whose
    engine exists never wait on another call's new layer set."""

    spec: BackboneSpec
    model: nn.Module
    device: torch.device
    weights_file: Path
    options: RuntimeOptions
    max_engines: int = MAX_ENGINES
    _engines: OrderedDict[EngineKey, Engine] = field(default_factory=OrderedDict)
    _building: dict[EngineKey, Future[Engine]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, layers: Sequence[str], pooling: str, with_logits: bool) -> Engine:
        key = (canonical_layers(layers), check_pooling(pooling), with_logits)
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._engines.move_to_end(key)
                return engine
            pending = self._building.get(key)
            builder = pending is None
            if pending is None:
                pending = self._building[key] = Future()
        if not builder:
            return pending.result()  # the same set being built by another call: share it
        try:
            engine = self._build(*key)
        except BaseException as exc:
            with self._lock:
                del self._building[key]
            pending.set_exception(exc)
            raise
        with self._lock:
            del self._building[key]
            self._engines[key] = engine
            while len(self._engines) > self.max_engines:
                dropped, _ = self._engines.popitem(last=False)
                log.info("dropped the least recently used engine (taps %s)", ",".join(dropped[0]))
        pending.set_result(engine)
        return engine

    def cached(self) -> list[EngineKey]:
        """The keys of the engines kept, least recently used first (for tests and logs)."""
        with self._lock:
            return list(self._engines)

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
