"""Safe decoding of untrusted image bytes.

Every image that enters Strata (gRPC uploads, CLI paths, URIs) goes through `decode_image`.
It only lets Pillow try the formats on `ALLOWED_FORMATS`, refuses decompression bombs from the
header before any pixel is decoded, refuses truncated data, applies the EXIF orientation and
converts every pixel mode to 8-bit RGB the way a viewer would show it (alpha over white,
16-bit scaled rather than clipped). Anything that goes wrong becomes `InvalidImage`, whose
message names the item and the reason and whose hint says how to fix it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Final

import numpy as np
from PIL import ExifTags, Image, ImageFile

from indexer.core.errors import InvalidImage, quote
from indexer.core.vocabulary import MAX_PIXELS
from indexer.imaging.orientation import upright_array
from indexer.imaging.turbo import jpeg_pixels

logger = logging.getLogger(__name__)

ALLOWED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})

# Sorted so that the order Pillow tries plugins in is the same in every process.
_OPEN_FORMATS: Final[list[str]] = sorted(ALLOWED_FORMATS)
_ACCEPTED: Final[str] = ", ".join(_OPEN_FORMATS)
_WHITE: Final[tuple[int, int, int]] = (255, 255, 255)
# Samples per band when scaling high-depth grey images (see _high_depth_to_rgb).
_BAND_PIXELS: Final[int] = 1 << 20

# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose).
_TRANSPOSE: Final[dict[int, Image.Transpose]] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Orientation values whose transpose swaps width and height.
_SWAPS_SIDES: Final[frozenset[int]] = frozenset({5, 6, 7, 8})

# Magic numbers of the accepted formats, to tell a damaged header from an unknown format.
_ALLOWED_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
)

_BMP_DIB_SIZES: Final[frozenset[bytes]] = frozenset(
    n.to_bytes(4, "little") for n in (12, 16, 40, 52, 56, 64, 108, 124)
)

# Magic numbers of common formats that are off the list, only to name them in the refusal.
# Pillow is never asked to identify these: its other plugins are exactly what we keep away.
_OFF_LIST_MAGIC: Final[tuple[tuple[bytes, str], ...]] = (
    (b"%PDF-", "PDF"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS (DOS binary)"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"icns", "ICNS"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 codestream"),
    (b"8BPS", "Photoshop PSD"),
    (b"qoif", "QOI"),
    (b"\x76\x2f\x31\x01", "OpenEXR"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
)
_FTYP_BRANDS: Final[dict[bytes, str]] = {
    b"avif": "AVIF",
    b"avis": "AVIF",
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
}
_BOMB_PIXELS_RE: Final[re.Pattern[str]] = re.compile(r"\((\d+) pixels\)")

_HINT_CONVERT: Final[str] = "convert the image to JPEG or PNG"
_HINT_REEXPORT: Final[str] = "re-export or re-download the file"


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded image, ready for the model's preprocessing: upright 8-bit RGB, as a Pillow
    image or, from the JPEG fast path (indexer.imaging.turbo), an HxWx3 uint8 array."""

    source: Image.Image | np.ndarray
    width: int  # original width after EXIF transpose (not the draft-reduced size)
    height: int
    format: str  # e.g. "JPEG"

    @cached_property
    def image(self) -> Image.Image:
        """The pixels as a Pillow image (mode "RGB", fully loaded)."""
        return self.source if isinstance(self.source, Image.Image) else Image.fromarray(self.source)


def content_hash(data: bytes) -> str:
    """SHA-256 hex digest of the raw bytes (identifies content independent of its name)."""
    return hashlib.sha256(data).hexdigest()


def decode_image(
    data: bytes,
    *,
    name: str,
    max_pixels: int = MAX_PIXELS,
    min_side: int | None = None,
) -> DecodedImage:
    """Decode untrusted image bytes into an RGB image, or raise `InvalidImage`.

    `name` (the item's uri or path) is quoted in every error. `max_pixels` bounds
    width*height as claimed by the header, checked before any pixel is decoded; Pillow's own
    process-wide `Image.MAX_IMAGE_PIXELS` also applies, so the effective limit is the lower
    of the two. When `min_side` is given and the file is a JPEG, the decoder works at a
    reduced scale (1/2 to 1/8) whose shorter side stays >= `min_side`; the reported
    width/height are still those of the full-size image.
    """
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if min_side is not None and min_side < 1:
        raise ValueError(f"min_side must be >= 1, got {min_side}")
    if not data:
        raise InvalidImage(f"{quote(name)}: empty file (0 bytes)", hint="send the file's contents")
    _warn_if_truncation_allowed()

    fmt = "image"
    try:
        # Pillow signals bombs between its limit and twice it only with a warning; turn that
        # into an error here. Our own check below is the authoritative one (catch_warnings is
        # process-wide state, so a concurrent thread may briefly see other filters).
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_OPEN_FORMATS) as src:
                # The JPEG plugin turns files with an MP index (many phone photos) into "MPO";
                # the first frame is an ordinary JPEG.
                fmt = "JPEG" if src.format == "MPO" else (src.format or "unknown")
                if fmt not in ALLOWED_FORMATS:  # defensive: a plugin reporting another name
                    raise InvalidImage(
                        f"{quote(name)}: {fmt} is not an accepted format; "
                        f"accepted formats: {_ACCEPTED}",
                        hint=_HINT_CONVERT,
                    )
                width, height = src.size
                _check_pixels(name, width, height, max_pixels)
                # Multi-frame files (GIF, TIFF, animated WebP/PNG) open on frame 0 and load()
                # decodes only that frame: the first frame stands for the item.
                if min_side is not None and fmt == "JPEG":
                    # Decode at 1/2..1/8 scale in libjpeg itself: Pillow picks the largest
                    # factor that keeps both sides >= the requested size.
                    src.draft("RGB", (min_side, min_side))
                pixels = None
                if fmt == "JPEG" and src.mode == "RGB":
                    pixels = jpeg_pixels(data, (width, height), src.size)
                if pixels is None:
                    src.load()
                orientation = exif_orientation(src, name)
                source: Image.Image | np.ndarray
                if pixels is not None:
                    source = upright_array(pixels, orientation)
                else:
                    # Turned after the conversion to 8-bit RGB, the cheapest copy to turn.
                    source = _to_rgb(src, name)
                    if orientation != 1:
                        source = source.transpose(_TRANSPOSE[orientation])
                if orientation in _SWAPS_SIDES:
                    width, height = height, width
    except InvalidImage:
        raise
    except Image.UnidentifiedImageError:
        raise _unrecognised(data, name) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _pillow_bomb(exc, name, max_pixels) from None
    except MemoryError:
        raise  # the server is out of memory: not the item's fault, let the service say so
    except OSError as exc:
        # Pillow reports short data as OSError("image file is truncated ...") or
        # "Truncated File Read"; everything else in this family is damaged data.
        reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        logger.debug("refusing %r: %s %s data", name, reason, fmt, exc_info=True)
        raise InvalidImage(
            f"{quote(name)}: {reason} {fmt} data ({exc})", hint=_HINT_REEXPORT
        ) from None
    except Exception as exc:
        # SyntaxError, ValueError, struct.error, EOFError, IndexError, ... from a plugin's
        # parser: never let a raw Pillow exception reach the caller.
        logger.debug("refusing %r: undecodable %s data", name, fmt, exc_info=True)
        detail = str(exc) or type(exc).__name__
        raise InvalidImage(
            f"{quote(name)}: corrupt {fmt} data ({detail})", hint=_HINT_REEXPORT
        ) from None

    return DecodedImage(source=source, width=width, height=height, format=fmt)


_truncation_warned = False


def _warn_if_truncation_allowed() -> None:
    """Pillow's LOAD_TRUNCATED_IMAGES is process-wide; if other code turned it on, truncated
    files decode with grey fill instead of failing. We do not flip it back (not ours to own),
    but say so once."""
    global _truncation_warned
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _truncation_warned:
        _truncation_warned = True
        logger.warning(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process: truncated images "
            "will be accepted with grey fill instead of refused"
        )


def _check_pixels(name: str, width: int, height: int, max_pixels: int) -> None:
    pixels = width * height
    if width < 1 or height < 1:
        raise InvalidImage(
            f"{quote(name)}: image has no pixels ({width}×{height})", hint=_HINT_REEXPORT
        )
    if pixels > max_pixels:
        raise InvalidImage(
            f"{quote(name)}: decompression bomb: {width}×{height} = {pixels} pixels exceeds the "
            f"limit of {max_pixels}",
            hint=f"downscale the image to at most {max_pixels} pixels",
        )


def _pillow_bomb(exc: Exception, name: str, max_pixels: int) -> InvalidImage:
    """Refusal for a bomb that Pillow's own check caught inside `Image.open`.

    Pillow raises before handing back the image, so the header's size is only in its message.
    """
    limit = max_pixels
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = min(limit, int(Image.MAX_IMAGE_PIXELS))
    found = _BOMB_PIXELS_RE.search(str(exc))
    claimed = f"{int(found.group(1))} pixels" if found else "a pixel count"
    logger.debug("refusing %r: Pillow bomb check: %s", name, exc)
    return InvalidImage(
        f"{quote(name)}: decompression bomb: the header claims {claimed}, which exceeds the limit "
        f"of {limit}",
        hint=f"downscale the image to at most {limit} pixels",
    )


def _unrecognised(data: bytes, name: str) -> InvalidImage:
    damaged = _sniff_allowed(data)
    if damaged:
        # Pillow's plugin recognised the magic number but could not parse the header.
        return InvalidImage(
            f"{quote(name)}: corrupt or truncated {damaged} header", hint=_HINT_REEXPORT
        )
    sniffed = _sniff_off_list(data)
    if sniffed:
        reason = f"{sniffed} is not an accepted format"
    elif data.isascii() and not data.strip(b" \t\r\n\x0c\x0b"):
        reason = "only whitespace, not a recognised image"
    else:
        reason = "not a recognised image"
    return InvalidImage(
        f"{quote(name)}: {reason}; accepted formats: {_ACCEPTED}", hint=_HINT_CONVERT
    )


def _sniff_allowed(data: bytes) -> str | None:
    for magic, label in _ALLOWED_MAGIC:
        if data.startswith(magic):
            return label
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    # "BM" alone is too common a text prefix; also require a known DIB header size.
    if data[:2] == b"BM" and data[14:18] in _BMP_DIB_SIZES:
        return "BMP"
    return None


def _sniff_off_list(data: bytes) -> str | None:
    """Name a common off-list format from its magic number, for a clearer refusal."""
    head = data[:1024]
    for magic, label in _OFF_LIST_MAGIC:
        if head.startswith(magic):
            return label
    if head[4:8] == b"ftyp" and head[8:12] in _FTYP_BRANDS:
        return _FTYP_BRANDS[head[8:12]]
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in text and text.startswith((b"<?xml", b"<svg", b"<!--", b"<!doctype svg")):
        return "SVG (vector graphics)"
    if text.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    if data.endswith(b"TRUEVISION-XFILE.\x00"):  # TGA has no magic, only this footer
        return "TGA"
    if head[:1] == b"\x0a" and head[1:2] in b"\x00\x02\x03\x04\x05" and head[2:3] == b"\x01":
        return "PCX"
    return None


def exif_orientation(image: Image.Image, name: str) -> int:
    """The EXIF orientation (1 = upright).

    A damaged EXIF block is common in the wild (camera firmware, editors) while the pixels are
    fine, so it costs the orientation, not the item.
    """
    try:
        orientation = int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:
        logger.warning("%r: unreadable EXIF block; orientation ignored", name, exc_info=True)
        return 1
    return orientation if orientation in _TRANSPOSE else 1


def _to_rgb(image: Image.Image, name: str) -> Image.Image:
    """Convert any decoded pixel mode to 8-bit RGB, as a viewer would display it.

    Pillow's own `convert("RGB")` clips 16/32-bit and float values to 0..255 (a 16-bit photo
    turns almost white) and simply discards alpha, exposing whatever colour transparent pixels
    store (usually black), so those modes are handled here. LAB (TIFF) goes through
    littleCMS inside convert() since Pillow 9.4.
    """
    mode = image.mode
    if mode == "RGB":
        # Hand back a plain copy, not the file-backed image: it then holds no reference to the
        # input buffer and stays valid whatever close() does in the installed Pillow.
        return image.copy() if isinstance(image, ImageFile.ImageFile) else image
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _high_depth_to_rgb(image)
    if mode == "La":
        image = image.convert("RGBa")  # premultiplied; Pillow cannot go La -> L directly
        mode = image.mode
    # "P" with a transparent palette entry and "L"/"RGB"/"1" with a tRNS colour carry alpha in
    # info["transparency"]; convert("RGBA") turns it into a real alpha band.
    if "A" in mode or "a" in mode or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise InvalidImage(
            f"{quote(name)}: unsupported pixel mode {mode} ({exc})",
            hint="convert the image to 8-bit RGB",
        ) from None


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer and float grey to 8 bits instead of clipping.

    Works in horizontal bands: the extra memory is one 8-bit plane plus one band, whatever the
    image's size (whole-image float64 temporaries of a 64 Mpx float TIFF ran past 3 GB).
    """
    width, height = image.size
    rows = max(1, _BAND_PIXELS // width)
    bands = [(top, min(height, top + rows)) for top in range(0, height, rows)]

    def band(top: int, bottom: int) -> np.ndarray:
        # "I;16B" arrives big-endian; the float arithmetic below handles that.
        return np.asarray(image.crop((0, top, width, bottom)))

    scale = _grey_scale(image.mode, bands, band)
    grey = np.empty((height, width), dtype=np.uint8)
    transparency = image.info.get("transparency")
    alpha = np.empty((height, width), dtype=np.uint8) if isinstance(transparency, int) else None
    for top, bottom in bands:
        values = band(top, bottom)
        grey[top:bottom] = np.clip(scale(values), 0, 255).astype(np.uint8)
        if alpha is not None:
            # A tRNS grey level on a 16-bit image: that value is fully transparent.
            alpha[top:bottom] = np.where(values == transparency, 0, 255)
    out = Image.fromarray(grey, mode="L")
    if alpha is not None:
        rgba = Image.merge("RGBA", (out, out, out, Image.fromarray(alpha, mode="L")))
        background = Image.new("RGB", rgba.size, _WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return out.convert("RGB")


def _grey_scale(
    mode: str, bands: list[tuple[int, int]], band: Callable[[int, int], np.ndarray]
) -> Callable[[np.ndarray], np.ndarray]:
    """The map from a band's samples to 0..255 floats, from statistics over every band:
    16-bit values scale by 1/257; floats in [0, 1] or [0, 255] keep their scale; anything else
    is stretched min..max. Non-finite samples become 0."""
    if mode.startswith("I;16"):
        return _sixteen_bit
    lo, hi, finite_any = np.inf, -np.inf, False
    for top, bottom in bands:
        values = band(top, bottom)
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
        if finite.size:
            finite_any = True
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if mode == "I" and finite_any and lo >= 0 and hi <= 65535:
        # Pillow decodes 16-bit PNG/TIFF grey as "I" in some versions: same 16-bit scale.
        return _sixteen_bit
    if finite_any and lo >= 0.0 and hi <= 1.0:
        factor, offset = 255.0, 0.0
    elif finite_any and lo >= 0.0 and hi <= 255.0:
        factor, offset = 1.0, 0.0
    elif finite_any and hi > lo:
        factor, offset = 255.0 / (hi - lo), lo
    else:  # nothing finite, or one value outside 0..255: no contrast to show
        return lambda values: np.zeros(values.shape, dtype=np.float32)

    def stretch(values: np.ndarray) -> np.ndarray:
        out = (values.astype(np.float64) - offset) * factor
        return np.where(np.isfinite(out), out, 0.0).round()

    return stretch


def _sixteen_bit(values: np.ndarray) -> np.ndarray:
    return (values.astype(np.float32) / 257.0).round()
