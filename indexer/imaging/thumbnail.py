"""Thumbnails: a bounded JPEG of each image, made at ingest from the pixels already decoded
for the network, so pages that show a collection never need the original files.

Ingest pays for every thumbnail, so the cheap choices win: a box filter (the area average,
antialiased and the cheapest of Pillow's filters), images of twice the thumbnail or more
shrunk by whole factors first (`reducing_gap=1.0`: a 1024x768 photo, decoded at 1/2 for the
network, becomes its thumbnail by one 2x2 average), and JPEG rather than WebP (a 256 px
thumbnail encodes in about 0.6 ms against 10-17 ms for WebP on this project's CPUs; files
10 kB vs 7-8 kB). Against bilinear with `reducing_gap=2.0` this halves the thumbnail's CPU
on mixed photos (1.46 to 0.74 ms with the encode) at 37.5-43 dB PSNR to a Lanczos
thumbnail of the full-size image, above what the quality-85 JPEG itself keeps.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from indexer.imaging.decode import decode_image

#: Longer side of a thumbnail, in pixels; smaller images are kept at their size.
THUMBNAIL_SIDE = 256
THUMBNAIL_MEDIA_TYPE = "image/jpeg"
_QUALITY = 85


@dataclass(frozen=True)
class Thumbnail:
    media_type: str
    data: bytes
    width: int
    height: int


def thumbnail_size(width: int, height: int, side: int = THUMBNAIL_SIDE) -> tuple[int, int]:
    """The size that fits (width, height) within side x side, never enlarging."""
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def make_thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE) -> Thumbnail:
    """A thumbnail of an already decoded, upright RGB image (indexer.imaging.decode)."""
    size = thumbnail_size(image.width, image.height, side)
    small = (
        image if size == image.size else image.resize(size, Image.Resampling.BOX, reducing_gap=1.0)
    )
    return _encode(small if small.mode == "RGB" else small.convert("RGB"))


def thumbnail_from_pixels(pixels: np.ndarray, side: int = THUMBNAIL_SIDE) -> Thumbnail:
    """A thumbnail of an HxWx3 uint8 array (e.g. a device-decoded image brought back small)."""
    return make_thumbnail(Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)), side)


def thumbnail_from_bytes(
    data: bytes, name: str, max_pixels: int, side: int = THUMBNAIL_SIDE
) -> Thumbnail:
    """Decode untrusted bytes (the safe decoder, JPEGs at reduced scale) and thumbnail them;
    raises InvalidImage naming `name` for anything the decoder refuses."""
    decoded = decode_image(data, name=name, max_pixels=max_pixels, min_side=side)
    return make_thumbnail(decoded.image, side)


def _encode(image: Image.Image) -> Thumbnail:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=_QUALITY)
    return Thumbnail(THUMBNAIL_MEDIA_TYPE, buffer.getvalue(), image.width, image.height)
