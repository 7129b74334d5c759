"""EXIF orientation applied to pixels already decoded: the GPU path's tensors and the CPU
JPEG fast path's arrays turn by the same table, as Pillow's transposes (decode._TRANSPOSE)."""

from __future__ import annotations

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
        return torch.rot90(image, 3, dims=(-2, -1))
    if orientation == 7:
        return image.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return torch.rot90(image, 1, dims=(-2, -1))
    return image
