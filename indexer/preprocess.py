"""Decoded image -> the uint8 pixel array a backbone expects (resize, centre-crop).

Normalisation (mean/std) happens on the model's device inside `extract`, so the CPU side
only moves uint8 bytes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from indexer.backbones.spec import Preprocessing

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


def prepare_pixels(image: Image.Image, pre: Preprocessing) -> np.ndarray:
    """Resize the shorter side to `pre.resize`, centre-crop `pre.crop`; HxWx3 uint8."""
    width, height = image.size
    scale = pre.resize / min(width, height)
    new_size = (max(pre.crop, round(width * scale)), max(pre.crop, round(height * scale)))
    if new_size != image.size:
        # reducing_gap: shrink by whole factors first (fast), then resample precisely.
        image = image.resize(new_size, _RESAMPLE[pre.interpolation], reducing_gap=3.0)
    left = (new_size[0] - pre.crop) // 2
    top = (new_size[1] - pre.crop) // 2
    image = image.crop((left, top, left + pre.crop, top + pre.crop))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
