"""Decoded image -> the uint8 pixel array a backbone expects (resize, centre-crop).

Normalisation (mean/std) happens inside the engine's graph, so the CPU side only moves
uint8 bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF


@dataclass(frozen=True)
class Preprocessing:
    """How pixels reach the network: resize the shorter side, centre-crop, normalise."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"  # "bilinear" or "bicubic"
    #: "auto" framing: images whose shorter side is below this many pixels are seen whole
    #: (0: never; the plain recipes).
    whole_below: int = 0

    def framed(self, framing: str) -> Preprocessing:
        """This preprocessing under a collection's framing.

        "center-crop" is the ImageNet evaluation recipe (e.g. shorter side to 256, centre
        224), which drops the outer eighth of every side. "whole" resizes the shorter side
        straight to the input size, so a square image is seen whole: right for thumbnails
        and tightly framed photos (CIFAR-style), whose border holds the object. "auto"
        decides per image (`for_image`): thumbnails whole, photos by the ImageNet recipe.
        """
        if framing == "whole":
            return replace(self, resize=self.crop, whole_below=0)
        if framing == "auto":
            return replace(self, whole_below=round(AUTO_WHOLE_BELOW * self.crop))
        return replace(self, whole_below=0)

    def for_image(self, width: int, height: int) -> Preprocessing:
        """The plain recipe for one image of this (original, upright) size. Under "auto",
        an image whose shorter side is below `whole_below` is a thumbnail, framed tightly
        by whoever made it (CIFAR, product shots, icons): upscaled, it has no background
        border for the centre crop to drop, only the object. Larger images are photos as
        ImageNet's, where the crop removes clutter at the edges."""
        if self.whole_below and min(width, height) < self.whole_below:
            return replace(self, resize=self.crop, whole_below=0)
        return replace(self, whole_below=0) if self.whole_below else self


#: Under "auto" framing, images with a shorter side below this multiple of the input size
#: (336 px for a 224 input) are seen whole. A camera photo or an ImageNet image (shorter
#: side typically 333-500 px, often more) keeps the centre crop; a CIFAR image (32 px), a
#: gallery thumbnail (100-300 px) is seen whole. bench/probe.py measures the choice.
AUTO_WHOLE_BELOW = 1.5


_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}

#: Shrinking an image by less than this factor, framing runs torchvision's Resize and
#: CenterCrop on a uint8 tensor (`frame_tensor`, the code the GPU path runs): on the CPU,
#: PyTorch's antialiased uint8 kernels, a port of Pillow's filters (the same weights to a
#: grey level) vectorised with AVX2. Though they resample the whole image, not only the crop
#: window, they frame the bench's mixed photos in 0.8 CPU-ms a photo against Pillow's 1.8
#: (`python bench/framing.py`). Larger factors take Pillow's path, which shrinks by whole
#: factors first (reducing_gap) where a full-support filter would cost more than it saves;
#: a draft-decoded JPEG is never shrunk by more than 2x (prepare.DRAFT_MARGIN).
TORCH_BELOW = 3.0


def crop_box(width: int, height: int, pre: Preprocessing) -> tuple[float, float, float, float]:
    """The source rectangle that "resize the shorter side to `pre.resize`, then centre-crop
    `pre.crop`" keeps, in the source image's pixel coordinates.

    Sizes and offsets are rounded exactly as torchvision's Resize and CenterCrop round them:
    a crop one pixel off moves deep features measurably (CNNs are not shift-invariant).
    """
    short, long = min(width, height), max(width, height)
    new_long = int(pre.resize * long / short)
    resized = (new_long, pre.resize) if width >= height else (pre.resize, new_long)
    resized = (max(pre.crop, resized[0]), max(pre.crop, resized[1]))
    left = round((resized[0] - pre.crop) / 2.0)
    top = round((resized[1] - pre.crop) / 2.0)
    sx, sy = width / resized[0], height / resized[1]
    return (left * sx, top * sy, (left + pre.crop) * sx, (top + pre.crop) * sy)


#: A strip longer than this many times its width is framed by Pillow's crop-window resize
#: on the CPU, which reads only the source pixels the crop needs: PyTorch resamples the
#: whole image first, and the shorter side's enlargement stretches the longer one (a
#: 1 x 1,000,000 PNG, 4 KB and 1 Mpx, asked for 150 GB; 1 x 5,000 took 0.8 GB).
MAX_ASPECT = 8
#: The longest side `frame_tensor` lets a resize produce (the GPU path has no Pillow to fall
#: back on): past it, the source is first cut to a central window that holds the crop.
MAX_RESIZED_SIDE = 4096


def frame_tensor(image: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """CxHxW uint8 -> crop x crop x 3 uint8, on the tensor's device: torchvision's Resize
    of the shorter side to `pre.resize` (antialiased), then CenterCrop `pre.crop`. `pre` is
    the plain recipe for this image (`Preprocessing.for_image`)."""
    resized = TF.resize(
        _central_window(image, pre),
        [pre.resize],
        interpolation=_INTERPOLATION[pre.interpolation],
        antialias=True,
    )
    return TF.center_crop(resized, [pre.crop, pre.crop]).permute(1, 2, 0).contiguous()


def _central_window(image: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """The image, or when resizing its shorter side to `pre.resize` would stretch the longer
    one past MAX_RESIZED_SIDE, its central window of that length (a view). The crop lies
    inside it with a wide margin for the filter; the pixel grid may move by up to half a
    source pixel, which only such strips (over 16:1 for a 256 px resize) see."""
    height, width = int(image.shape[-2]), int(image.shape[-1])
    short, long = min(height, width), max(height, width)
    if pre.resize * long <= MAX_RESIZED_SIDE * short:
        return image
    keep = -(-MAX_RESIZED_SIDE * short // pre.resize)  # ceil: at least the crop's share
    start = (long - keep) // 2
    if height > width:
        return image[..., start : start + keep, :]
    return image[..., start : start + keep]


def prepare_pixels(
    image: Image.Image | np.ndarray, pre: Preprocessing, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Resize the shorter side to `pre.resize`, centre-crop `pre.crop`; HxWx3 uint8.
    `image` is 8-bit RGB: a Pillow image or an HxWx3 uint8 array (the JPEG fast path's).
    `size` is the image's original (width, height) when `image` was draft-decoded smaller:
    "auto" framing decides by it.
    """
    if isinstance(image, np.ndarray):
        width, height = image.shape[1], image.shape[0]
    else:
        width, height = image.size
    pre = pre.for_image(*(size or (width, height)))
    whole = (width, height) == (pre.resize, pre.resize) == (pre.crop, pre.crop)
    if isinstance(image, Image.Image) and image.mode != "RGB":
        return np.asarray(image.convert("RGB")) if whole else _resize_crop_window(image, pre)
    if whole:
        return np.asarray(image)
    short, long = min(width, height), max(width, height)
    if short < TORCH_BELOW * pre.resize and long <= MAX_ASPECT * short:
        # np.array, not asarray: torch wants a writable array (Pillow's bytes are read-only).
        pixels = torch.from_numpy(image if isinstance(image, np.ndarray) else np.array(image))
        return frame_tensor(pixels.permute(2, 0, 1), pre).numpy()
    return _resize_crop_window(
        Image.fromarray(image) if isinstance(image, np.ndarray) else image, pre
    )


def _resize_crop_window(image: Image.Image, pre: Preprocessing) -> np.ndarray:
    """Pillow resamples only the crop window: its filter still reads the source pixels just
    outside the box, so the output equals resize-then-crop. reducing_gap shrinks large
    images by whole factors first (fast), then resamples."""
    box = crop_box(image.width, image.height, pre)
    out = (pre.crop, pre.crop)
    image = image.resize(out, _RESAMPLE[pre.interpolation], box=box, reducing_gap=3.0)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)
