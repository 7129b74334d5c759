"""JPEG decoding, resizing and cropping on the model's device (nvJPEG on a GPU).

On a GPU the CPU becomes the bottleneck of ingest: a ~500x375 JPEG costs a few CPU-ms to
decode with libjpeg, against well under a millisecond for the forward pass. Here plain JPEGs
are decoded in batches by `torchvision.io.decode_jpeg` on the device, turned upright and
resized/cropped there, and handed to the engine as device tensors: no pixel crosses PCIe.

Only the header is read on the CPU (Pillow, no pixel decode) for the checks every image gets:
the format, the pixel limit and the EXIF orientation. Anything that is not a plain RGB or
grey JPEG within the limit, or that the device decoder refuses, goes back to the CPU path in
`indexer.embedding`, which gives the one, well-worded verdict on bad input.

The same code runs on the CPU (torchvision's libjpeg decoder), which is how CI tests it.
(torchvision 0.29 marks its decoders deprecated in favour of TorchCodec; they still ship
and work, and TorchCodec does not install offline next to torch 2.14.1 here.)
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from indexer.imaging.decode import content_hash, exif_orientation
from indexer.imaging.framing import Preprocessing, frame_tensor
from indexer.imaging.orientation import upright

logger = logging.getLogger(__name__)


# Modes nvJPEG turns into RGB as a viewer would; CMYK/YCCK JPEGs stay on the CPU path.
_PLAIN_MODES = frozenset({"RGB", "L"})


@dataclass(frozen=True)
class JpegHeader:
    width: int  # upright, i.e. after the EXIF orientation
    height: int
    orientation: int


def decode_device(setting: str, model_device: torch.device) -> torch.device | None:
    """Where JPEGs are decoded: the model's device when `setting` is "on", or "auto" and the
    model runs on CUDA; None keeps decoding on the CPU."""
    if setting == "on" or (setting == "auto" and model_device.type == "cuda"):
        return model_device
    return None


def read_header(data: bytes, max_pixels: int) -> JpegHeader | None:
    """The header of a plain, complete JPEG within the pixel limit; None for anything else.

    A file must end with the end-of-image marker: libjpeg pads a truncated file with grey
    and only warns, where the CPU path refuses it.
    """
    if not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return None
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as src:
            if src.format != "JPEG" or src.mode not in _PLAIN_MODES:
                return None
            width, height = src.size
            if width < 1 or height < 1 or width * height > max_pixels:
                return None
            orientation = exif_orientation(src, "")
    except Exception:  # unidentified, damaged header, bomb warning: the CPU path words it
        return None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return JpegHeader(width, height, orientation)


def frame(image: torch.Tensor, pre: Preprocessing) -> torch.Tensor:
    """CxHxW uint8 -> crop x crop x 3 uint8: shorter side to `pre.resize` (antialiased, as
    torchvision's Resize on tensors), then the centre `pre.crop` ("auto" framing: by the
    image's size, as on the CPU path)."""
    return frame_tensor(image, pre.for_image(int(image.shape[-1]), int(image.shape[-2])))


@dataclass(frozen=True)
class _Checked:
    """What the CPU learns of one file before the device decodes it."""

    header: JpegHeader
    content_hash: str
    encoded: torch.Tensor  # the file's bytes, as decode_jpeg takes them


def _check(data: bytes, max_pixels: int) -> _Checked | None:
    """Header, hash and bytes of one file, in the decode pool: SHA-256 of a 1 MB photo
    costs about 0.7 ms and releases the GIL, so a batch's files are hashed in parallel."""
    header = read_header(data, max_pixels)
    if header is None:
        return None
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return _Checked(header, content_hash(data), encoded)


def prepare_jpegs(
    named_bytes: Sequence[tuple[str, bytes]],
    pre: Preprocessing,
    max_pixels: int,
    device: torch.device,
    executor: Executor | None = None,
) -> list[tuple[str, str, int, int, torch.Tensor] | None]:
    """(name, content hash, width, height, HxWx3 pixels on `device`) per image, or None
    where the image must take the CPU path. Headers are read and files hashed in
    `executor` (the decode pool) when given: on a GPU that CPU work is what limits ingest."""
    out: list[tuple[str, str, int, int, torch.Tensor] | None] = [None] * len(named_bytes)
    files = [data for _, data in named_bytes]
    limits = [max_pixels] * len(files)
    pool_map = map if executor is None or len(files) < 2 else executor.map
    ready = [(i, check) for i, check in enumerate(pool_map(_check, files, limits)) if check]
    if not ready:
        return out
    decoded = _decode([check.encoded for _, check in ready], device)
    for (i, check), image in zip(ready, decoded, strict=True):
        if image is None:
            continue
        header = check.header
        pixels = frame(upright(image, header.orientation), pre)
        out[i] = (named_bytes[i][0], check.content_hash, header.width, header.height, pixels)
    return out


def _decode(encoded: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """Decode a batch at once; if the batch fails, each image alone, so that one file the
    device decoder refuses (the CPU path then judges it) does not send the rest back."""
    try:
        return list(decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        pass
    images: list[torch.Tensor | None] = []
    for data in encoded:
        try:
            images.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError as exc:
            logger.debug("device JPEG decode refused an image (%s); CPU path instead", exc)
            images.append(None)
    return images
