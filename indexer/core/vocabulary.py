"""Strata's vocabulary: the names, defaults and limits that the library, the servicers and
the CLI share, each defined once here.

This module imports nothing heavy (no torch, numpy or gRPC), so the CLI can read it without
loading a model.
"""

from __future__ import annotations

from indexer.core.errors import InvalidInput

#: The backbone a collection, Classify or Embed uses when none is named.
DEFAULT_BACKBONE = "efficientnet_lite0"

#: The three depth presets every backbone names, shallow to deep.
DEPTH_PRESETS: tuple[str, ...] = ("edges", "parts", "semantics")

#: Spatial pooling of a tapped feature map into one vector (indexer.engine.pooling).
POOLINGS: tuple[str, ...] = ("avg", "max", "gem")
DEFAULT_POOLING = "avg"

#: How a collection frames its images for the network (indexer.imaging.framing): "auto"
#: sees thumbnails whole and photos with the ImageNet centre crop, per image. New
#: collections get DEFAULT_FRAMING; existing ones keep the framing stored with them.
#: "auto", measured by bench/probe.py against the other two: photo top-1 of the centre
#: crop (0.972 vs 0.944 whole), CIFAR probe of whole (0.759 vs 0.741 centre crop), and
#: near-copy search of thumbnails and crops at recall@1 1.000 like both.
FRAMINGS: tuple[str, ...] = ("center-crop", "whole", "auto")
DEFAULT_FRAMING = "auto"

#: Where a label came from: a person, or a prediction (which never overwrites a person's).
HUMAN = "human"
PREDICTED = "predicted"
LABEL_SOURCES: tuple[str, ...] = (HUMAN, PREDICTED)

#: Inference engine, precision and JPEG-decode placement settings.
ENGINES: tuple[str, ...] = ("auto", "torch", "openvino")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
DEVICE_DECODE_MODES: tuple[str, ...] = ("auto", "on", "off")

#: FAISS index tuning: exact Flat up to this many vectors, then IVF (fp16 codes) trained on
#: the collection's own vectors, retrained each time it grows by INDEX_RETRAIN_GROWTH, with
#: nprobe calibrated to reach INDEX_TARGET_RECALL (recall@10). 20k x 1,280 floats is about
#: the largest Flat one core scans in ~10 ms.
INDEX_FLAT_MAX_VECTORS = 20_000
INDEX_RETRAIN_GROWTH = 2.0
INDEX_TARGET_RECALL = 0.95

#: Request limits.
MAX_PIXELS = 64_000_000
MAX_K = 1000
MAX_IMAGES_PER_REQUEST = 256

#: Defaults of the query and learning calls.
DEFAULT_SEARCH_K = 10
DEFAULT_CLASSIFY_K = 5
DEFAULT_FOLDS = 5
DEFAULT_SUGGESTIONS = 10
#: Duplicates (indexer.catalog.duplicates): the default cosine at each depth preset of
#: DEFAULT_BACKBONE with DEFAULT_POOLING, measured by bench/duplicates.py on CIFAR-10 photos
#: (500 and 2,000) with 20 or 40 planted as 8 kinds of copy (exact, PNG, JPEG q30, up- and
#: downscaled, 90% crop, brighter): at each depth the lowest cosine whose pair precision is
#: at least 0.95 at both sizes. One cosine cannot serve every depth: unrelated photos (of
#: 500) score 0.86 (median) to 0.997 at edges, 0.73 to 0.96 at parts, 0.46 to 0.84 at
#: semantics.
DEFAULT_DUPLICATE_THRESHOLDS: dict[str, float] = {"edges": 0.996, "parts": 0.955, "semantics": 0.83}
#: Any other depth, backbone or pooling is calibrated on the collection: the cosine a random
#: pair of its n items exceeds with probability DUPLICATE_TAIL / n, by a log-normal fit of
#: random pairs' distances (on the bench it gives 0.996 at edges and 0.955 at parts too).
DUPLICATE_TAIL = 0.01

#: Browsing (strata.v1.Browse): item listing pages, orderings and label-source filters
#: ("none": items without any label), thumbnails per call, 2-D projection methods.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
ITEM_ORDERS: tuple[str, ...] = ("id", "-id", "uri", "-uri", "confidence", "-confidence")
UNLABELLED = "none"
LABEL_SOURCE_FILTERS: tuple[str, ...] = (HUMAN, PREDICTED, UNLABELLED)
MAX_THUMBNAILS_PER_REQUEST = 1000
PROJECTION_METHODS: tuple[str, ...] = ("pca", "umap", "tsne")
DEFAULT_PROJECTION_METHOD = "pca"


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise InvalidInput(
            f"unknown pooling {pooling!r}", hint=f"choose one of: {', '.join(POOLINGS)}"
        )
    return pooling


def check_request_size(
    count: int, limit: int, what: str = "images", hint: str = "split them over several calls"
) -> None:
    """Refuse a call carrying more than `limit` things; the fix is on the caller's side."""
    if count > limit:
        raise InvalidInput(f"{count} {what} in one call exceeds the limit of {limit}", hint=hint)
