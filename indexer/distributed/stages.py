"""The two Ray Data stages of distributed ingest, as plain callables on column batches
(dict of numpy arrays), so they run, and are tested, without Ray.

Rows flow as: uri, path, known_hash (what the database holds for that uri) -> read and
prepare (CPU task) -> embed (actor) -> the driver, which writes them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.core import errors
from indexer.core.errors import InvalidInput, StrataError
from indexer.core.validation import check_uri
from indexer.engine.extract import embed_prepared
from indexer.engine.loader import BackboneCache, LoadedBackbone, resolve_device
from indexer.engine.options import RuntimeOptions
from indexer.imaging.decode import content_hash
from indexer.imaging.framing import Preprocessing
from indexer.imaging.prepare import PreparedImage, prepare_many

Batch = dict[str, np.ndarray]

READY, UNCHANGED, FAILED = "ready", "unchanged", "failed"
#: error_kind of a file that could not be read (no StrataError: the CLI says it as before).
UNREADABLE = "unreadable"


def vector_column(layer: str) -> str:
    return f"vector:{layer}"


def read_and_prepare(batch: Batch, pre: Preprocessing, max_pixels: int) -> Batch:
    """Read each file's bytes, skip content the database already holds, decode and frame the
    rest (indexer.imaging.prepare, as the server does). A bad file fails alone."""
    n = len(batch["uri"])
    status = np.full(n, READY, dtype=object)
    hashes = np.full(n, "", dtype=object)
    kinds = np.full(n, "", dtype=object)
    messages = np.full(n, "", dtype=object)
    hints = np.full(n, "", dtype=object)
    widths = np.zeros(n, np.int64)
    heights = np.zeros(n, np.int64)
    pixels = np.full(n, b"", dtype=object)
    shapes = np.zeros((n, 3), np.int64)
    todo: list[tuple[int, str, bytes]] = []
    for i in range(n):
        uri, path = str(batch["uri"][i]), str(batch["path"][i])
        try:
            check_uri(uri)
        except InvalidInput as exc:
            status[i], kinds[i] = FAILED, type(exc).__name__
            messages[i], hints[i] = exc.message, exc.hint or ""
            continue
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            status[i], kinds[i], messages[i] = FAILED, UNREADABLE, f"cannot read: {exc.strerror}"
            continue
        hashes[i] = content_hash(data)
        if hashes[i] == str(batch["known_hash"][i]):
            status[i] = UNCHANGED  # a rerun: this content is committed already
            continue
        todo.append((i, uri, data))
    outcomes = prepare_many([(uri, data) for _, uri, data in todo], pre, max_pixels)
    for (i, _, _), outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, StrataError):
            status[i], kinds[i] = FAILED, type(outcome).__name__
            messages[i], hints[i] = outcome.message, outcome.hint or ""
            continue
        array = np.ascontiguousarray(np.asarray(outcome.pixels, dtype=np.uint8))
        widths[i], heights[i] = outcome.width, outcome.height
        pixels[i], shapes[i] = array.tobytes(), array.shape
    return {
        "uri": np.asarray(batch["uri"], dtype=object),
        "status": status,
        "content_hash": hashes,
        "width": widths,
        "height": heights,
        "pixels": pixels,
        "shape": shapes,
        "error_kind": kinds,
        "error_message": messages,
        "error_hint": hints,
    }


def error_of(kind: str, message: str, hint: str) -> StrataError | None:
    """The library error a stage recorded by name; None for an unreadable file."""
    if kind == UNREADABLE:
        return None
    cls = getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, StrataError)):
        cls = StrataError
    return cls(message, hint=hint or None)


@dataclass(frozen=True)
class EmbedderConfig:
    """What an embedding actor loads: the collection's backbone and taps, and the engine
    settings (device "auto" takes the GPU Ray gave the actor, if any)."""

    backbone: str
    layers: tuple[str, ...]
    dims: tuple[int, ...]
    pooling: str
    batch_size: int
    device: str = "auto"
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    weights_files: Mapping[str, Path] = field(default_factory=dict)
    #: Also emit the ImageNet top-1 class (for WordNet tags), from the same pass.
    top1: bool = False


class Embedder:
    """One backbone per actor, loaded once by BackboneCache, run by embed_prepared: the
    server's engine code, so vectors match single-server ingest."""

    def __init__(self, config: EmbedderConfig) -> None:
        self.config = config
        cache = BackboneCache(resolve_device(config.device), config.weights_files, config.runtime)
        self.backbone: LoadedBackbone = cache.get(config.backbone)

    def __call__(self, batch: Batch) -> Batch:
        config = self.config
        n = len(batch["uri"])
        ready = [i for i in range(n) if batch["status"][i] == READY]
        images = [
            PreparedImage(
                str(batch["uri"][i]),
                str(batch["content_hash"][i]),
                int(batch["width"][i]),
                int(batch["height"][i]),
                np.frombuffer(batch["pixels"][i], np.uint8).reshape(batch["shape"][i]),
            )
            for i in ready
        ]
        out: dict[str, Any] = {k: v for k, v in batch.items() if k not in ("pixels", "shape")}
        for layer, dim in zip(config.layers, config.dims, strict=True):
            out[vector_column(layer)] = np.zeros((n, dim), np.float32)
        out["top1"] = np.full(n, -1, np.int64)
        if images:
            features = embed_prepared(
                self.backbone,
                images,
                list(config.layers),
                config.pooling,
                config.batch_size,
                with_logits=config.top1,
            )
            for layer in config.layers:
                out[vector_column(layer)][ready] = features.vectors[layer]
            if features.logits is not None:
                out["top1"][ready] = features.logits.argmax(axis=1)
        return out
