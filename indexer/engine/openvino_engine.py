"""OpenVINO CPU engine: the tap graph traced once and compiled by OpenVINO. Its kernels for
depthwise convolutions and fused conv+BN+ReLU6 run several times faster than eager PyTorch on
a CPU, and it runs a batch as parallel sub-batches (one per stream), which keeps every core
busy without a barrier after each small op. The converted graph is cached on disk, keyed by
weights, layers, pooling and library versions.

OpenVINO is imported through `import_openvino`, which keeps its usage telemetry out: a
plain `import openvino` sends an event from a forked subprocess, and forking a process that
runs gRPC threads can crash the child (seen in tests); a service should not phone home.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from indexer.backbones.spec import BackboneSpec
from indexer.engine.graph import GRAPH_VERSION, TapGraph
from indexer.engine.openvino_split import split_after
from indexer.engine.options import RuntimeOptions

log = logging.getLogger(__name__)

#: Most images per OpenVINO request: small enough that every stream gets work (and a core
#: taken by another process delays only a slice of the batch), large enough to amortise a
#: call. Smaller batches are split evenly over the streams (a batch of 4 on 2 streams runs as
#: 2 + 2, not 4 on one core).
OPENVINO_CHUNK = 8

#: PyTorch's notice on torch.jit.trace and trace_method (silenced while converting).
TRACE_DEPRECATED = r"`torch\.jit\.trace(_method)?` is deprecated"
_OV_PRECISION = {"auto": "f32", "fp32": "f32", "fp16": "f16", "bf16": "bf16"}


class _Stage:
    """One compiled graph: a batch runs as parallel sub-batches (one per stream); a single
    image runs on `lone`, compiled for latency (one stream on every thread), which one
    stream of `compiled` would leave to one core (9-10 against 13 ms on 2 cores)."""

    def __init__(self, compiled: Any, lone: Any | None):
        ov = import_openvino()
        requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.streams = max(1, int(compiled.get_property("NUM_STREAMS")))
        self.threads = compiled.get_property("INFERENCE_NUM_THREADS")
        self.outputs = len(compiled.outputs)
        self._lone = lone.create_infer_request() if lone is not None else None
        self._queue = ov.AsyncInferQueue(compiled, max(1, requests))
        self._queue.set_callback(self._collect)
        self._results: dict[int, list[np.ndarray]] = {}

    def _collect(self, request: Any, slot: int) -> None:
        self._results[slot] = [
            np.array(request.get_output_tensor(i).data, dtype=np.float32)
            for i in range(self.outputs)
        ]

    def run(self, array: np.ndarray) -> list[np.ndarray]:
        if len(array) == 1 and self.streams > 1 and self._lone is not None:
            self._lone.infer({0: array})
            return [
                np.array(self._lone.get_output_tensor(i).data, dtype=np.float32)
                for i in range(self.outputs)
            ]
        self._results = {}
        chunk = min(OPENVINO_CHUNK, -(-len(array) // self.streams))
        starts = range(0, len(array), chunk)
        for slot, start in enumerate(starts):
            self._queue.start_async({0: array[start : start + chunk]}, slot)
        self._queue.wait_all()
        parts = [self._results[slot] for slot in range(len(starts))]
        return [np.concatenate([p[i] for p in parts]) for i in range(self.outputs)]


class OpenVinoEngine:
    name = "openvino"

    def __init__(
        self,
        compiled: Any,
        outputs: int,
        precision: str,
        lone: Any | None = None,
        *,
        then: tuple[Any, Any | None] | None = None,
    ):
        """`compiled` runs batches and `lone` single images (see `_Stage`); `then`, the
        (batch, single-image) compilations of a second graph fed with the first one's one
        output, when the graph is cut in two to run its halves at different precisions
        (`precision` then says how)."""
        self._stages = [_Stage(compiled, lone)] + ([_Stage(*then)] if then is not None else [])
        if self._stages[-1].outputs != outputs:
            raise ValueError(f"the graph has {self._stages[-1].outputs} outputs, not {outputs}")
        first = self._stages[0]
        self.description = (
            f"openvino on cpu, {precision}, {first.streams} streams, {first.threads} threads"
            + (", a latency request for single images" if lone is not None else "")
        )
        # AsyncInferQueue is not thread-safe; callers usually hold the backbone lock anyway.
        self._lock = threading.Lock()

    def run(self, pixels: torch.Tensor) -> list[np.ndarray]:
        array = np.ascontiguousarray(pixels.cpu().numpy())
        with self._lock:
            outputs = self._stages[0].run(array)
            for stage in self._stages[1:]:
                (activation,) = outputs
                outputs = stage.run(activation)
        return outputs


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
    with warnings.catch_warnings(), torch.inference_mode():
        # OpenVINO's PyTorch frontend reads TorchScript, so tracing is the route here; the
        # deprecation notice only alarms whoever reads the server's first start-up log.
        # (Filters are process-wide: held for the trace alone, not the whole conversion.)
        warnings.filterwarnings("ignore", TRACE_DEPRECATED, FutureWarning)
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


def build_openvino_engine(
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
    config = {
        "PERFORMANCE_HINT": "THROUGHPUT",
        # As many threads as PyTorch uses (all cores unless OMP_NUM_THREADS says otherwise).
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "CACHE_DIR": str(cache / "compiled"),
    }
    outputs = len(graph.layers) + int(graph.with_logits)
    halves = _mixed_halves(core, xml, spec, options)
    if halves is not None:
        early, late = halves
        compiled, lone = _compile_pair(core, early, config, "f32")
        return OpenVinoEngine(
            compiled,
            outputs,
            f"fp32 through {spec.fp32_through}, bf16 after",
            lone,
            then=_compile_pair(core, late, config, "bf16"),
        )
    precision = _OV_PRECISION[options.precision]
    compiled, lone = _compile_pair(core, core.read_model(str(xml)), config, precision)
    return OpenVinoEngine(compiled, outputs, precision, lone)


def _compile_pair(core: Any, model: Any, config: dict[str, Any], precision: str) -> tuple[Any, Any]:
    """`model` compiled for batches and, for a lone search, which must not wait for one
    core when two are idle, for latency (0.1 s more to compile)."""
    config = {**config, "INFERENCE_PRECISION_HINT": precision}
    return (
        core.compile_model(model, "CPU", config),
        core.compile_model(model, "CPU", {**config, "PERFORMANCE_HINT": "LATENCY"}),
    )


def native_bf16(core: Any) -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX): OpenVINO's own default
    precision is bf16 only there."""
    ov = import_openvino()
    return bool(core.get_property("CPU", "INFERENCE_PRECISION_HINT") == ov.Type.bf16)


def _mixed_halves(
    core: Any, xml: Path, spec: BackboneSpec, options: RuntimeOptions
) -> tuple[Any, Any] | None:
    """The graph cut after the backbone's last bf16-sensitive layer, where precision `auto`
    runs the rest in bf16: a CPU with native bf16 and a backbone that names that layer.
    None: the whole graph runs at one precision."""
    if options.precision != "auto" or spec.fp32_through is None or not native_bf16(core):
        return None
    halves = split_after(import_openvino(), core, xml, spec.fp32_through)
    if halves is None:
        log.info(
            "taps inside %s's first layers (through %s): the graph runs in fp32",
            spec.name,
            spec.fp32_through,
        )
    return halves
