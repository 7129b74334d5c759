"""Real photos as encoded bytes for tests: scikit-image's bundled pictures, CIFAR-10 images
from the shared dataset zip when it is present, and distorted copies for robustness checks.

Every builder returns fresh `bytes` (or PIL images) built from real pixels, never noise, and
is cached so a test process encodes each photo once.

    from photos import colour_photos, jpeg, cifar_images, hundred_photos, distorted

- `colour_photos()` / `grey_photos()`: name -> RGB PIL image (the skimage photos).
- `jpeg(image, quality)`: encode a PIL image.
- `cifar_images(n)`: [(uri, jpeg bytes, class)] from the zip, or None when it is missing.
- `photo_crops(n)`: n distinct, textured crops of the large skimage photos.
- `hundred_photos(source)`: 100 (uri, bytes) pairs: skimage photos + CIFAR or crops.
- `distorted(image)`: a central 80% crop, rotated 12°, recompressed at JPEG quality 60.
"""

from __future__ import annotations

import functools
import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

# The shared datasets sit next to the project's root (../shared/datasets) on dev and CI
# machines; STRATA_CIFAR_ZIP points elsewhere.
CIFAR_ZIP = Path(
    os.environ.get("STRATA_CIFAR_ZIP")
    or Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-small.zip"
)
CIFAR_MISSING_REASON = f"{CIFAR_ZIP} is not on this machine (shared datasets are dev/CI only)"

# `skimage.data.cat` is `chelsea` again, and the right stereo frame nearly repeats the
# left one: each picture appears once here so "finds itself first" is well defined.
_COLOUR: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": skdata.astronaut,
    "chelsea": skdata.chelsea,
    "coffee": skdata.coffee,
    "rocket": skdata.rocket,
    "hubble_deep_field": skdata.hubble_deep_field,
    "retina": skdata.retina,
    "immunohistochemistry": skdata.immunohistochemistry,
    "stereo_motorcycle": lambda: skdata.stereo_motorcycle()[0],
    "colorwheel": skdata.colorwheel,
}
_GREY: dict[str, Callable[[], np.ndarray]] = {
    "camera": skdata.camera,
    "brick": skdata.brick,
    "grass": skdata.grass,
    "gravel": skdata.gravel,
    "moon": skdata.moon,
    "coins": skdata.coins,
    "clock": skdata.clock,
    "page": skdata.page,
    "text": skdata.text,
}


@functools.cache
def _array(name: str) -> np.ndarray:
    array = {**_COLOUR, **_GREY}[name]()
    array.setflags(write=False)
    return array


def photo(name: str) -> Image.Image:
    """A fresh RGB copy of one skimage photo (grey ones converted to RGB)."""
    return Image.fromarray(_array(name)).convert("RGB")


def colour_photos() -> dict[str, Image.Image]:
    return {name: photo(name) for name in _COLOUR}


def grey_photos() -> dict[str, Image.Image]:
    return {name: photo(name) for name in _GREY}


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@functools.cache
def photo_jpeg(name: str, quality: int = 90) -> bytes:
    return jpeg(photo(name), quality)


# -- CIFAR-10 ------------------------------------------------------------------------------


def cifar_available() -> bool:
    return CIFAR_ZIP.is_file()


@functools.cache
def cifar_images(per_class: int = 10, split: str = "test") -> list[tuple[str, bytes, str]] | None:
    """The first `per_class` images of each class, as stored (32×32 JPEG): [(uri, bytes,
    class)], classes interleaved (so any prefix mixes them); None when the zip is missing."""
    if not cifar_available():
        return None
    out: list[tuple[str, bytes, str]] = []
    with zipfile.ZipFile(CIFAR_ZIP) as archive:
        by_class: dict[str, list[str]] = {}
        for name in sorted(archive.namelist()):
            parts = name.split("/")
            if len(parts) == 3 and parts[0] == split and parts[2].endswith(".jpg"):
                by_class.setdefault(parts[1], []).append(name)
        for position in range(per_class):
            for label in sorted(by_class):
                if position < len(by_class[label]):
                    name = by_class[label][position]
                    out.append((f"cifar/{name}", archive.read(name), label))
    return out


# -- crops of the large photos ---------------------------------------------------------------

_CROP_SOURCES = (
    "retina",
    "hubble_deep_field",
    "stereo_motorcycle",
    "rocket",
    "astronaut",
    "immunohistochemistry",
    "coffee",
    "camera",
    "brick",
    "grass",
    "gravel",
    "moon",
)


@functools.cache
def photo_crops(count: int, side: int = 160) -> list[tuple[str, bytes]]:
    """`count` distinct crops (side×side, non-overlapping tiles) of the larger skimage photos,
    skipping near-flat tiles (retina's black border, the sky) that would look alike."""
    by_source: list[list[tuple[str, Image.Image]]] = []
    for name in _CROP_SOURCES:
        image = photo(name)
        width, height = image.size
        tiles = []
        for top in range(0, height - side + 1, side):
            for left in range(0, width - side + 1, side):
                tile = image.crop((left, top, left + side, top + side))
                if float(np.asarray(tile, dtype=np.float32).std()) > 20.0:
                    tiles.append((f"crop/{name}/{left}x{top}.jpg", tile))
        by_source.append(tiles)
    # Round-robin over the sources so no single photo (retina is the largest) dominates.
    picked: list[tuple[str, Image.Image]] = []
    for position in range(max(len(t) for t in by_source)):
        picked.extend(tiles[position] for tiles in by_source if position < len(tiles))
    if len(picked) < count:
        raise ValueError(f"only {len(picked)} textured crops; asked for {count}")
    return [(uri, jpeg(tile, 92)) for uri, tile in picked[:count]]


def hundred_photos(source: str) -> list[tuple[str, bytes]]:
    """100 real photos: the 18 skimage ones, then 82 CIFAR images ("cifar") or 82 crops of
    the large photos ("crops")."""
    base = [(f"skimage/{n}.jpg", photo_jpeg(n)) for n in (*_COLOUR, *_GREY)]
    rest = 100 - len(base)
    if source == "crops":
        return base + photo_crops(rest)
    if source == "cifar":
        images = cifar_images(per_class=10)
        if images is None:
            raise FileNotFoundError(CIFAR_MISSING_REASON)
        return base + [(uri, data) for uri, data, _ in images[:rest]]
    raise ValueError(f"unknown source {source!r}")


# -- distortions -----------------------------------------------------------------------------


def distorted(
    image: Image.Image, keep: float = 0.8, degrees: float = 12.0, quality: int = 60
) -> bytes:
    """Rotate by `degrees` (corners filled black, as a phone's editor would), keep the
    central `keep` of each side, recompress as JPEG at `quality`."""
    rotated = image.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False)
    width, height = rotated.size
    dx, dy = round(width * (1 - keep) / 2), round(height * (1 - keep) / 2)
    return jpeg(rotated.crop((dx, dy, width - dx, height - dy)), quality)
