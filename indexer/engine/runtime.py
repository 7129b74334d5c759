"""Inference engines: run a backbone's taps on a batch of uint8 NHWC pixels.

`TapGraph` defines the computation once: normalise, one forward pass, tap the layers, pool,
L2-normalise (and logits when asked). Engines run that same graph:

- `TorchEngine`: eager PyTorch on the configured device. On CUDA it runs under fp16 autocast
  (bf16 by setting); on CPU in fp32. Stops the forward pass after the last tap.
- `OpenVinoEngine`: the TapGraph traced once and compiled by OpenVINO for the CPU. Its
  kernels for depthwise convolutions and fused conv+BN+ReLU6 run several times faster than
  eager PyTorch on a CPU, and it runs a batch as parallel sub-batches (one per stream), which
  keeps every core busy without a barrier after each small op. The converted graph is cached
  on disk, keyed by weights, layers, pooling and library versions.

`engine="auto"` picks OpenVINO on a CPU when it is installed and the graph converts, else
PyTorch; everything around the engine (decoding, batching, storage) is one code path.

OpenVINO is imported through `import_openvino`, which keeps its usage telemetry out: a
plain `import openvino` sends an event from a forked subprocess, and forking a process that
runs gRPC threads can crash the child (seen in tests); a service should not phone home.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from indexer.backbones.spec import BackboneSpec
from indexer.core.errors import FailedPrecondition
from indexer.core.vocabulary import ENGINES, PRECISIONS, check_pooling
from indexer.engine.pooling import pool

log = logging.getLogger(__name__)

#: Bump when TapGraph's computation changes, so cached OpenVINO graphs are rebuilt.
GRAPH_VERSION = 2
#: Images per OpenVINO request: small enough that every stream gets work (and a core taken
#: by another process delays only a slice of the batch), large enough to amortise a call.
OPENVINO_CHUNK = 8


class EngineSettingError(FailedPrecondition):
    """An engine or precision setting that cannot work on this machine (a server-side
    configuration problem, not the caller's)."""


@dataclass(frozen=True)
class RuntimeOptions:
    """How forward passes run. The library default is plain eager PyTorch (no build step);
    the service passes its settings (default engine "auto")."""

    engine: str = "torch"
    #: "auto": fp16 autocast on CUDA, fp32 on CPU.
    precision: str = "auto"
    #: Where converted OpenVINO graphs are kept; None: $XDG_CACHE_HOME/strata or ~/.cache/strata.
    cache_dir: Path | None = None

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise EngineSettingError(
                f"unknown engine {self.engine!r}", hint=f"choose one of: {', '.join(ENGINES)}"
            )
        if self.precision not in PRECISIONS:
            raise EngineSettingError(
                f"unknown precision {self.precision!r}",
                hint=f"choose one of: {', '.join(PRECISIONS)}",
            )

    @property
    def resolved_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "strata"


class Engine(Protocol):
    name: str
    #: What runs, in words: engine, device, precision (logged once per engine).
    description: str

    def run(self, pixels: torch.Tensor) -> list[np.ndarray]:
        """(N,H,W,3) uint8 -> one float32 (N,C) array per output of the TapGraph."""
        ...


class _StopForward(Exception):
    """Raised from a hook once every tap is captured, to skip the rest of the network."""


class TapGraph(nn.Module):
    """uint8 NHWC pixels -> (unit vector per tapped layer, ..., [logits]) in one pass."""

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        pooling: str,
        with_logits: bool,
        mean: Sequence[float],
        std: Sequence[float],
    ):
        super().__init__()
        self.model = model
        self.layers = tuple(dict.fromkeys(layers))
        self.pooling = check_pooling(pooling)
        self.with_logits = with_logits
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)
        modules = dict(model.named_modules())
        self._taps = [modules[name] for name in self.layers]

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # NHWC memory seen as NCHW: a channels-last tensor, the layout the weights use.
        x = pixels.permute(0, 3, 1, 2).float()
        x = (x - self.mean) / self.std
        captured: dict[int, torch.Tensor] = {}
        # A traced graph cannot raise; OpenVINO drops the unused tail of the network itself.
        stop_early = not self.with_logits and not torch.jit.is_tracing()

        def hook_for(slot: int) -> Callable[[nn.Module, object, torch.Tensor], None]:
            def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
                if slot not in captured:
                    # fp32 before pooling: GeM's cube overflows fp16 under autocast.
                    captured[slot] = pool(output.float(), self.pooling)
                if stop_early and len(captured) == len(self._taps):
                    raise _StopForward

            return hook

        handles = [m.register_forward_hook(hook_for(i)) for i, m in enumerate(self._taps)]
        logits = None
        try:
            with contextlib.suppress(_StopForward):
                out = self.model(x)
                # torchvision's Inception returns a namedtuple when aux logits are on.
                logits = out.logits if hasattr(out, "logits") else out
        finally:
            for handle in handles:
                handle.remove()
        outputs = [F.normalize(captured[i], dim=1) for i in range(len(self._taps))]
        if self.with_logits:
            assert logits is not None  # the forward pass ran to the end
            outputs.append(logits.float())
        return tuple(outputs)


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for a precision setting; None runs in fp32."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


class TorchEngine:
    name = "torch"

    def __init__(self, graph: TapGraph, device: torch.device, precision: str):
        self.graph = graph
        self.device = device
        self.dtype = autocast_dtype(device, precision)
        precision_name = "fp32" if self.dtype is None else str(self.dtype).removeprefix("torch.")
        self.description = f"torch on {device}, {precision_name}"

    def run(self, pixels: torch.Tensor) -> list[np.ndarray]:
        autocast = (
            torch.autocast(self.device.type, dtype=self.dtype)
            if self.dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            batch = pixels.to(self.device, non_blocking=True)
            outputs = self.graph(batch)
        return [o.float().cpu().numpy() for o in outputs]


_OV_PRECISION = {"auto": "f32", "fp32": "f32", "fp16": "f16", "bf16": "bf16"}


class OpenVinoEngine:
    name = "openvino"

    def __init__(self, compiled: Any, outputs: int, precision: str):
        ov = import_openvino()

        self._outputs = outputs
        requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.description = (
            f"openvino on cpu, {precision}, "
            f"{compiled.get_property('NUM_STREAMS')} streams, "
            f"{compiled.get_property('INFERENCE_NUM_THREADS')} threads"
        )
        self._queue = ov.AsyncInferQueue(compiled, max(1, requests))
        self._queue.set_callback(self._collect)
        self._results: dict[int, list[np.ndarray]] = {}
        # AsyncInferQueue is not thread-safe; callers usually hold the backbone lock anyway.
        self._lock = threading.Lock()

    def _collect(self, request: Any, slot: int) -> None:
        self._results[slot] = [
            np.array(request.get_output_tensor(i).data, dtype=np.float32)
            for i in range(self._outputs)
        ]

    def run(self, pixels: torch.Tensor) -> list[np.ndarray]:
        array = np.ascontiguousarray(pixels.cpu().numpy())
        with self._lock:
            self._results = {}
            starts = range(0, len(array), OPENVINO_CHUNK)
            for slot, start in enumerate(starts):
                self._queue.start_async({0: array[start : start + OPENVINO_CHUNK]}, slot)
            self._queue.wait_all()
            parts = [self._results[slot] for slot in range(len(starts))]
        return [np.concatenate([p[i] for p in parts]) for i in range(self._outputs)]


_core_lock = threading.Lock()
_core: Any = None


def _openvino_core() -> Any:
    global _core
    with _core_lock:
        if _core is None:
            _core = import_openvino().Core()
        return _core


def import_openvino() -> ModuleType:
    """`import openvino` with its telemetry package blocked, so OpenVINO falls back to its
    own no-op stub (it imports the package in a try/except ImportError)."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
    import openvino

    return openvino


def openvino_available() -> bool:
    try:
        import_openvino()
    except ImportError:
        return False
    return True


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _graph_key(spec: BackboneSpec, weights_file: Path, graph: TapGraph) -> str:
    stat = weights_file.stat()
    parts = [
        f"graph={GRAPH_VERSION}",
        spec.name,
        repr(spec.preprocessing),
        f"{weights_file.resolve()}:{stat.st_size}:{stat.st_mtime_ns}",
        ",".join(graph.layers),
        graph.pooling,
        f"logits={graph.with_logits}",
        *(f"{p}={_version(p)}" for p in ("torch", "timm", "torchvision", "openvino")),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def _convert(graph: TapGraph, crop: int, xml: Path) -> None:
    """Trace the graph and convert it with OpenVINO's PyTorch frontend; saved atomically as
    `xml` + `.bin`. (The frontend directly, not `ov.convert_model`: the same conversion
    without the model-conversion tool's extra passes and usage telemetry.)"""
    ov = import_openvino()
    from openvino.frontend import FrontEndManager
    from openvino.frontend.pytorch.ts_decoder import TorchScriptPythonDecoder

    example = torch.zeros(2, crop, crop, 3, dtype=torch.uint8)
    with torch.inference_mode():
        traced = torch.jit.trace(graph, example, check_trace=False)
    frontend = FrontEndManager().load_by_framework("pytorch")
    decoder = TorchScriptPythonDecoder(traced)  # must outlive convert(): the C++ side uses it
    source = frontend.load(decoder)
    (pixels,) = source.get_inputs()
    source.set_partial_shape(pixels, ov.PartialShape([-1, crop, crop, 3]))
    source.set_element_type(pixels, ov.Type.u8)
    model = frontend.convert(source)
    del decoder
    xml.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=xml.parent, prefix=".convert-"))
    try:
        # compress_to_fp16 would round the weights: keep them exactly as trained.
        ov.save_model(model, scratch / "graph.xml", compress_to_fp16=False)
        os.replace(scratch / "graph.bin", xml.with_suffix(".bin"))
        os.replace(scratch / "graph.xml", xml)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _openvino_engine(
    spec: BackboneSpec, weights_file: Path, graph: TapGraph, options: RuntimeOptions
) -> OpenVinoEngine:
    core = _openvino_core()
    cache = options.resolved_cache_dir / "openvino"
    xml = cache / f"{spec.name}-{_graph_key(spec, weights_file, graph)}.xml"
    if not (xml.is_file() and xml.with_suffix(".bin").is_file()):
        log.info(
            "converting %s taps %s for OpenVINO (once; cached in %s)",
            spec.name,
            graph.layers,
            cache,
        )
        _convert(graph, spec.preprocessing.crop, xml)
    # Always from disk: the first run computes exactly what every later run will, and the
    # graph holds no reference to the PyTorch weights.
    model = core.read_model(str(xml))
    precision = _OV_PRECISION[options.precision]
    config = {
        "PERFORMANCE_HINT": "THROUGHPUT",
        # As many threads as PyTorch uses (all cores unless OMP_NUM_THREADS says otherwise).
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "INFERENCE_PRECISION_HINT": precision,
        "CACHE_DIR": str(cache / "compiled"),
    }
    compiled = core.compile_model(model, "CPU", config)
    outputs = len(graph.layers) + int(graph.with_logits)
    return OpenVinoEngine(compiled, outputs, precision)


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
                engine = _openvino_engine(self.spec, self.weights_file, graph, self.options)
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
