"""Engines built and run before a server says SERVING, so its first request is as fast as
its hundredth: model load, graph conversion (or the compiled-graph cache), and the first
forward pass of each batch shape happen at start-up, not inside somebody's request; so do
the search path's first-time costs (its SQL compiled, each collection's spec cached)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from indexer.catalog import search
from indexer.catalog.collections import list_collections
from indexer.catalog.context import Context
from indexer.core.errors import StrataError
from indexer.core.vocabulary import DEFAULT_BACKBONE, DEFAULT_POOLING, DEPTH_PRESETS
from indexer.engine.extract import extract
from indexer.engine.factory import canonical_layers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmedEngine:
    backbone: str
    layers: tuple[str, ...]
    pooling: str
    seconds: float  # load + build + one pass of each batch shape


def engine_keys(ctx: Context) -> list[tuple[str, tuple[str, ...], str]]:
    """(backbone, layers, pooling) of every collection; the default collection's when there
    is none yet, which is what a new user's first `collections create` will ask for."""
    keys = [
        (c.backbone, tuple(d.layer for d in c.depths), c.pooling) for c in list_collections(ctx)
    ]
    if not keys:
        backbone = ctx.backbones.get(DEFAULT_BACKBONE)
        layers = tuple(backbone.layer(depth).name for depth in DEPTH_PRESETS)
        keys = [(DEFAULT_BACKBONE, layers, DEFAULT_POOLING)]
    return list(dict.fromkeys((b, canonical_layers(ls), p) for b, ls, p in keys))


def warm_engines(ctx: Context) -> list[WarmedEngine]:
    """Build each engine the collections need and run a lone image and a full batch through
    it (the two shapes a server meets: one search, one ingest batch). A collection whose
    backbone cannot load is logged and skipped: its own requests will say why."""
    warmed = []
    for name, layers, pooling in engine_keys(ctx):
        started = time.perf_counter()
        try:
            backbone = ctx.backbones.get(name)
            crop = backbone.spec.preprocessing.crop
            for batch in dict.fromkeys((1, ctx.settings.batch_size)):
                pixels = np.zeros((batch, crop, crop, 3), dtype=np.uint8)
                extract(backbone, pixels, list(layers), pooling)
        except StrataError as exc:
            log.warning("not warming %s %s: %s", name, layers, exc)
            continue
        except Exception:  # a warm-up is an optimisation: never a reason not to serve
            log.warning("warming %s %s failed", name, layers, exc_info=True)
            continue
        seconds = time.perf_counter() - started
        warmed.append(WarmedEngine(name, layers, pooling, seconds))
        log.info("warm-up: %s %s (%s) ready in %.2f s", name, layers, pooling, seconds)
    return warmed


def warm_search_paths(ctx: Context) -> int:
    """One vector query per collection, at its first depth: the search's SQL statements are
    compiled, its spec cached and its FAISS index touched before anyone asks (the first
    image search of a warm engine cost 14-20 ms against 8 later, 12.7 after this). Returns
    how many collections were warmed; a failure is logged, never raised."""
    warmed = 0
    for collection in list_collections(ctx):
        depth = collection.depths[0]
        probe = search.Query("warm-up", vector=np.ones(depth.dim, dtype=np.float32))
        try:
            search.search(ctx, collection.name, [probe], [depth.name], k=1)
        except Exception:  # an optimisation: never a reason not to serve
            log.warning("warming searches of %s failed", collection.name, exc_info=True)
            continue
        warmed += 1
    return warmed
