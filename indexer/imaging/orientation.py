"""EXIF orientation applied to pixels already decoded: the GPU path's CxHxW tensors and the CPU
JPEG fast path's HxWxC arrays turn by the same table, as Pillow's transposes (decode._TRANSPOSE).

Torch is imported for type checking only, so the CPU decoder (every untrusted image's door)
loads without it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def upright(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation to a CxHxW tensor (as PIL.ImageOps.exif_transpose)."""
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-2, -1)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-2, -1)
    if orientation == 6:
        return image.rot90(3, dims=(-2, -1))
    if orientation == 7:
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return image.rot90(1, dims=(-2, -1))
    return image


def upright_array(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to an HxWxC array; the result is C-contiguous and writable
    (a copy unless `orientation` is 1)."""
    if orientation == 2:
        turned = pixels[:, ::-1]
    elif orientation == 3:
        turned = pixels[::-1, ::-1]
    elif orientation == 4:
        turned = pixels[::-1]
    elif orientation == 5:
        turned = pixels.transpose(1, 0, 2)
    elif orientation == 6:
        turned = np.rot90(pixels, 3, axes=(0, 1))
    elif orientation == 7:
        turned = pixels.transpose(1, 0, 2)[::-1, ::-1]
    elif orientation == 8:
        turned = np.rot90(pixels, 1, axes=(0, 1))
    else:
        return pixels
    return np.ascontiguousarray(turned)
