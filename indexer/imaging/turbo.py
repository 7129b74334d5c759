"""JPEG pixels through libjpeg-turbo's TurboJPEG API (simplejpeg), straight into a numpy array.

Pillow decodes a JPEG into its own 4-byte-a-pixel storage, and handing that over as an array
packs it to 3 bytes and copies it twice more. TurboJPEG writes the HxWx3 array the framing
reads: decode + framing of a 500x375 photo fell from 1.75 to 1.26 CPU-ms, of the bench's
mixed photos from 6.3 to 5.7 (2026-12-07, bench/README). The pixels are the same to the
bit (the same integer IDCT, fancy upsampling and DCT-domain scaling; tests/test_turbo.py
holds both decoders to it), so vectors stored before and after this path agree.

Only what Pillow would decode to RGB without a conversion takes this path, after Pillow has
read and checked the header. Anything TurboJPEG declines, damaged data included (strict
mode: libjpeg's warnings count), goes back to Pillow, whose errors name the item.
"""

from __future__ import annotations

import logging

import numpy as np
import simplejpeg

logger = logging.getLogger(__name__)


def jpeg_pixels(
    data: bytes, full_size: tuple[int, int], size: tuple[int, int]
) -> np.ndarray | None:
    """HxWx3 uint8 RGB of the JPEG `data`, whose header says `full_size`, decoded at `size`:
    the full size or the reduced one Pillow's draft chose (1/2, 1/4 or 1/8; TurboJPEG could
    also scale by 3/8, 5/8, ..., so the scale is pinned); None when TurboJPEG declines."""
    width, height = size
    scaled: dict[str, int] = {}
    if size != full_size:
        factor = next((f for f in (2, 4, 8) if _reduced(full_size, f) == size), None)
        # Under 16 px a side, two of TurboJPEG's scales can round to the same size (a 3x3
        # image at 1/2 and at 3/8 both give 2x2) and it might take the other one.
        if factor is None or max(full_size) < 16:
            return None
        scaled = {"min_width": width, "min_height": height, "min_factor": factor}
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True, **scaled)
    except (ValueError, RuntimeError) as exc:
        # Damaged or unusual data (or no decoder to be had): Pillow decodes it or says why
        # not. Strict mode reports libjpeg's warnings after the whole decode, so such a file
        # costs two decodes; Pillow accepts some of them (a few corrupt bytes) as it did.
        logger.debug("TurboJPEG declined a JPEG (%s); Pillow decodes it", exc)
        return None
    if pixels.shape != (height, width, 3):  # not the scale Pillow chose
        return None
    return pixels


def _reduced(size: tuple[int, int], factor: int) -> tuple[int, int]:
    """A side scaled by 1/factor, rounded up, as libjpeg and Pillow's draft both size it."""
    return (-(-size[0] // factor), -(-size[1] // factor))
