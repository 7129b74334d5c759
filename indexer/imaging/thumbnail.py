"""Thumbnails: a bounded JPEG of each image, made at ingest from the pixels already decoded
for the network, so pages that show a collection never need the original files.

Ingest pays for every thumbnail, so the cheap choices win. The decoded pixels (an array from
the JPEG fast path, indexer/imaging/turbo.py) are shrunk by PyTorch's antialiased bilinear
uint8 kernels, the framing's, and encoded by TurboJPEG (quality 85, 4:2:0 as Pillow's
default), JPEG rather than WebP (a 256 px thumbnail encodes in 0.14 ms against 10-17 ms for
WebP on this project's CPUs). Against Pillow's box filter and encoder, which made them until
2026-12-07, a thumbnail costs 0.53-0.62 CPU-ms instead of 0.83-0.92, its file is 10% smaller
and it is as close to a Lanczos thumbnail of the full-size image (PSNR median 32.1 against
32.0 dB, worst 28.2 against 27.6, on 36 of bench/ingest.py's mixed photos).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simplejpeg
import torch
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from indexer.imaging.budget import decoding
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


def make_thumbnail(image: Image.Image | np.ndarray, side: int = THUMBNAIL_SIDE) -> Thumbnail:
    """A thumbnail of an already decoded, upright RGB image (indexer.imaging.decode): a
    Pillow image or an HxWx3 uint8 array."""
    if isinstance(image, Image.Image):
        image = np.array(image.convert("RGB") if image.mode != "RGB" else image)
    height, width = image.shape[:2]
    size = thumbnail_size(width, height, side)
    return _encode(image if size == (width, height) else _shrink(image, size))


def thumbnail_from_bytes(
    data: bytes, name: str, max_pixels: int, side: int = THUMBNAIL_SIDE
) -> Thumbnail:
    """Decode untrusted bytes (the safe decoder, JPEGs at reduced scale) and thumbnail them;
    raises InvalidImage naming `name` for anything the decoder refuses."""
    with decoding(data, side):
        decoded = decode_image(data, name=name, max_pixels=max_pixels, min_side=side)
        return make_thumbnail(decoded.source, side)


def _shrink(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    channels_first = torch.from_numpy(pixels).permute(2, 0, 1)  # a view: channels last in memory
    small = TF.resize(
        channels_first, [size[1], size[0]], interpolation=InterpolationMode.BILINEAR, antialias=True
    )
    return small.permute(1, 2, 0).contiguous().numpy()


def _encode(pixels: np.ndarray) -> Thumbnail:
    data = simplejpeg.encode_jpeg(
        np.ascontiguousarray(pixels), quality=_QUALITY, colorspace="RGB", colorsubsampling="420"
    )
    height, width = pixels.shape[:2]
    return Thumbnail(THUMBNAIL_MEDIA_TYPE, data, width, height)
