"""Engines built and run before a server says SERVING, so its first request is as fast as
its hundredth: model load, graph conversion (or the compiled-graph cache), and the first
forward pass of each batch shape happen at start-up, not inside somebody's request; so do
the search path's first-time costs (its SQL compiled, each collection's spec cached, an
image decoded, framed and run alone through the engine)."""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from indexer.catalog import search
from indexer.catalog.collections import list_collections
from indexer.catalog.context import Context
from indexer.core.errors import StrataError
from indexer.core.vocabulary import DEFAULT_BACKBONE, DEFAULT_POOLING, DEPTH_PRESETS
from indexer.engine.extract import extract
from indexer.engine.factory import canonical_layers
from indexer.imaging.prepare import prepare_one

log = logging.getLogger(__name__)

#: (width, height) of `warm_up_photo`: an ImageNet photo's typical size.
WARM_UP_PHOTO_SIZE = (500, 375)


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
    it (the two shapes a server meets: one search, one ingest batch), made of the warm-up
    photo decoded, framed and thumbnailed as ingest does it, so even a server without
    collections has Pillow's plugins and buffers ready for its first image. A collection
    whose backbone cannot load is logged and skipped: its own requests will say why."""
    warmed = []
    for name, layers, pooling in engine_keys(ctx):
        started = time.perf_counter()
        try:
            backbone = ctx.backbones.get(name)
            pre = backbone.spec.preprocessing
            if _photo_allowed(ctx):
                photo = prepare_one("warm-up", warm_up_photo(), pre, ctx.settings.max_pixels, True)
                one = np.asarray(photo.pixels)
            else:  # the server refuses images this large: the engine alone is warmed
                one = np.zeros((pre.crop, pre.crop, 3), dtype=np.uint8)
            for batch in dict.fromkeys((1, ctx.settings.batch_size)):
                extract(backbone, np.repeat(one[None], batch, axis=0), list(layers), pooling)
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
    """One query per collection before anyone asks: its spec cached, the search's SQL
    statements compiled, its FAISS index touched. The first collection of each engine and
    framing is asked with an image (`warm_up_photo`), so decoding (Pillow's plugins and first
    buffers), framing, the engine's lone-image request, FAISS at every depth and the hits'
    SQL have all run once: with a vector query alone the first image search of a restarted
    server still cost 19 ms against 6 later (in process), with the image 7 ms. The others,
    and any whose image query fails (a backbone whose weights are missing), get a vector
    query at their first depth, which needs no forward pass. The image counts in
    strata_images_embedded_total like any other. Returns how many collections were
    warmed; a failure is logged, never raised."""
    warmed = 0
    asked_with_an_image: set[tuple[str, tuple[str, ...], str, str]] = set()
    for collection in list_collections(ctx):
        layers = canonical_layers([d.layer for d in collection.depths])
        key = (collection.backbone, tuple(layers), collection.pooling, collection.framing)
        if key not in asked_with_an_image and _photo_allowed(ctx):
            image = search.Query("warm-up", image=warm_up_photo())
            try:
                search.search(ctx, collection.name, [image], k=1)
            except Exception as exc:  # an optimisation: never a reason not to serve
                log.info(
                    "warming %s with an image failed (%s); a vector instead", collection.name, exc
                )
            else:
                asked_with_an_image.add(key)
                warmed += 1
                continue
        depth = collection.depths[0]
        vector = search.Query("warm-up", vector=np.ones(depth.dim, dtype=np.float32))
        try:
            search.search(ctx, collection.name, [vector], [depth.name], k=1)
        except Exception:
            log.warning("warming searches of %s failed", collection.name, exc_info=True)
            continue
        warmed += 1
    return warmed


def _photo_allowed(ctx: Context) -> bool:
    """Whether this server accepts an image the warm-up photo's size (STRATA_MAX_PIXELS)."""
    return WARM_UP_PHOTO_SIZE[0] * WARM_UP_PHOTO_SIZE[1] <= ctx.settings.max_pixels


@cache
def warm_up_photo() -> bytes:
    """A 500x375 JPEG like a photo (colour gradients with sensor-like grain, quality 90),
    the typical size of an ImageNet photo: made here, so start-up reads no file."""
    width, height = WARM_UP_PHOTO_SIZE
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    smooth = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 255
    grain = np.random.default_rng(0).normal(0.0, 12.0, smooth.shape)
    pixels = np.clip(smooth + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()
