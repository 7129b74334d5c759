"""In-memory image samples for tests: hostile inputs that must be refused and odd inputs that
must decode.

Photos come from scikit-image's bundled data (`chelsea`, `coffee`, `astronaut`), so colour and
orientation checks run on real pictures, not noise. Every builder returns `bytes` and is cached,
so a sample is built at most once per test process.

Reuse from other tests:

    from image_samples import HOSTILE, ODD_BUT_VALID, EXPECTED, hostile_samples, valid_samples

- `HOSTILE`: name -> builder of bytes that `decode_image` must refuse with `InvalidImage`.
- `HOSTILE_REASON`: name -> a substring the refusal's message contains.
- `ODD_BUT_VALID`: name -> builder of bytes that must decode to RGB.
- `EXPECTED`: name -> (format, width, height) of each `ODD_BUT_VALID` sample after EXIF.
- `hostile_samples()` / `valid_samples()`: the same as name -> bytes dicts.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from photos import photo
from PIL import Image

# --- photos -----------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


# --- hand-made containers ---------------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_ihdr(width: int, height: int, bit_depth: int, colour_type: int) -> bytes:
    return png_chunk(
        b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    )


def png_zero_bomb(width: int, height: int) -> bytes:
    """A 1-bit greyscale PNG of all-black rows: a few KB compressed for any size.

    Rows are fed to zlib one at a time so building it never holds the raw image in memory.
    """
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed bits
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    idat = b"".join(parts)
    return (
        PNG_SIGNATURE
        + png_ihdr(width, height, 1, 0)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_raw(array: np.ndarray, bit_depth: int, colour_type: int) -> bytes:
    """Write a PNG from big-endian samples, for layouts Pillow cannot save (16-bit RGB)."""
    height, width = array.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"
    rows = array.astype(dtype).reshape(height, -1)
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(height))
    return (
        PNG_SIGNATURE
        + png_ihdr(width, height, bit_depth, colour_type)
        + png_chunk(b"IDAT", zlib.compress(raw, 9))
        + png_chunk(b"IEND", b"")
    )


def gif_claiming(
    screen: tuple[int, int] = (65535, 65535), frame: tuple[int, int] = (65535, 65535)
) -> bytes:
    """A tiny GIF whose header claims a huge logical screen and/or first frame."""
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", screen[0], screen[1], 0x80, 0, 0)  # global 2-colour table
        + b"\x00\x00\x00\xff\xff\xff"
        + b"\x2c"
        + struct.pack("<HHHHB", 0, 0, frame[0], frame[1], 0)
        + b"\x02\x02\x4c\x01\x00"  # LZW min code size 2, one 2-byte sub-block, terminator
        + b"\x3b"
    )


# --- hostile ----------------------------------------------------------------------------------


@functools.cache
def empty() -> bytes:
    return b""


@functools.cache
def random_bytes() -> bytes:
    return np.random.default_rng(1234).integers(0, 256, 4096, dtype=np.uint8).tobytes()


@functools.cache
def text() -> bytes:
    return b"name,label\ncat.jpg,cat\n" * 20


@functools.cache
def whitespace() -> bytes:
    return b" \n\t\n"


@functools.cache
def truncated_jpeg() -> bytes:
    data = encode(photo("chelsea"), "JPEG", quality=90)
    return data[: len(data) // 2]


@functools.cache
def truncated_png() -> bytes:
    data = encode(photo("chelsea"), "PNG")
    return data[: len(data) // 2]


@functools.cache
def header_only_jpeg() -> bytes:
    data = encode(photo("chelsea"), "JPEG", quality=90)
    return data[:20]  # SOI + APP0 (JFIF), no frame header


@functools.cache
def header_only_png() -> bytes:
    return PNG_SIGNATURE + png_ihdr(451, 300, 8, 2)


@functools.cache
def header_only_gif() -> bytes:
    return gif_claiming((64, 64), (64, 64))[:13]


@functools.cache
def svg() -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        b'<circle cx="50" cy="50" r="40" fill="red"/></svg>\n'
    )


@functools.cache
def eps() -> bytes:
    # Pillow writes EPS without Ghostscript; only reading it would run Ghostscript.
    return encode(photo("chelsea").resize((64, 43)), "EPS")


@functools.cache
def pdf() -> bytes:
    return encode(photo("chelsea").resize((64, 43)), "PDF")


@functools.cache
def ico() -> bytes:
    return encode(photo("astronaut"), "ICO", sizes=[(64, 64)])


@functools.cache
def pcx() -> bytes:
    return encode(photo("chelsea"), "PCX")


@functools.cache
def tga() -> bytes:
    return encode(photo("chelsea"), "TGA")


@functools.cache
def jpeg2000() -> bytes:
    return encode(photo("chelsea"), "JPEG2000")


@functools.cache
def png_bomb() -> bytes:
    """20000×20000 (400 Mpx): over Pillow's own limit, ~50 KB on disk."""
    return png_zero_bomb(20_000, 20_000)


@functools.cache
def png_over_limit() -> bytes:
    """9000×9000 (81 Mpx): under Pillow's default limit, over MAX_PIXELS."""
    return png_zero_bomb(9_000, 9_000)


@functools.cache
def gif_65535() -> bytes:
    return gif_claiming((65535, 65535), (65535, 65535))


@functools.cache
def gif_small_screen_huge_frame() -> bytes:
    return gif_claiming((1, 1), (65535, 65535))


HOSTILE: dict[str, Callable[[], bytes]] = {
    "empty": empty,
    "random_bytes": random_bytes,
    "text": text,
    "whitespace": whitespace,
    "truncated_jpeg": truncated_jpeg,
    "truncated_png": truncated_png,
    "header_only_jpeg": header_only_jpeg,
    "header_only_png": header_only_png,
    "header_only_gif": header_only_gif,
    "svg": svg,
    "eps": eps,
    "pdf": pdf,
    "ico": ico,
    "pcx": pcx,
    "tga": tga,
    "jpeg2000": jpeg2000,
    "png_bomb": png_bomb,
    "png_over_limit": png_over_limit,
    "gif_65535": gif_65535,
    "gif_small_screen_huge_frame": gif_small_screen_huge_frame,
}

# A substring each refusal's message contains (lower-cased comparison).
HOSTILE_REASON: dict[str, str] = {
    "empty": "empty file",
    "random_bytes": "not a recognised image",
    "text": "not a recognised image",
    "whitespace": "not a recognised image",
    "truncated_jpeg": "truncated jpeg",
    "truncated_png": "truncated png",
    "header_only_jpeg": "jpeg",
    "header_only_png": "png",
    "header_only_gif": "gif",
    "svg": "svg",
    "eps": "eps",
    "pdf": "pdf",
    "ico": "ico",
    "pcx": "pcx",
    "tga": "tga",
    "jpeg2000": "jpeg 2000",
    "png_bomb": "decompression bomb",
    "png_over_limit": "decompression bomb",
    "gif_65535": "decompression bomb",
    "gif_small_screen_huge_frame": "decompression bomb",
}

# Hostile samples that claim huge sizes: refused from the header, fast, without allocating.
BOMBS: tuple[str, ...] = ("png_bomb", "png_over_limit", "gif_65535", "gif_small_screen_huge_frame")


# --- odd but valid ----------------------------------------------------------------------------


def _with_alpha_hole(image: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """RGBA copy whose `box` is fully transparent black: naive conversion shows black there."""
    rgba = image.convert("RGBA")
    rgba.paste((0, 0, 0, 0), box)
    return rgba


ALPHA_HOLE = (0, 0, 100, 80)  # the transparent box in the alpha samples (left, top, right, bottom)


@functools.cache
def cmyk_jpeg() -> bytes:
    return encode(photo("chelsea").convert("CMYK"), "JPEG", quality=92)


@functools.cache
def cmyk_red_jpeg() -> bytes:
    return encode(Image.new("RGB", (64, 48), (230, 20, 20)).convert("CMYK"), "JPEG", quality=95)


@functools.cache
def gradient_16bit_png() -> bytes:
    """256×16 grey ramp whose column x holds x*257: full 16-bit range, exactly 8-bit x."""
    ramp = np.tile((np.arange(256, dtype=np.uint16) * 257), (16, 1))
    return encode(Image.fromarray(ramp), "PNG")


@functools.cache
def photo_16bit_png() -> bytes:
    grey = np.asarray(photo("chelsea").convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")


@functools.cache
def rgb_16bit_png() -> bytes:
    return png_raw(np.asarray(photo("chelsea")).astype(np.uint16) * 257, 16, 2)


@functools.cache
def palette_transparency_png() -> bytes:
    paletted = photo("chelsea").quantize(colors=255)
    palette = paletted.getpalette() or []
    paletted.putpalette([*palette[: 255 * 3], 0, 0, 0])  # index 255: black, fully transparent
    paletted.paste(255, ALPHA_HOLE)
    return encode(paletted, "PNG", transparency=255)


@functools.cache
def la_png() -> bytes:
    return encode(_with_alpha_hole(photo("chelsea"), ALPHA_HOLE).convert("LA"), "PNG")


@functools.cache
def rgba_png() -> bytes:
    return encode(_with_alpha_hole(photo("chelsea"), ALPHA_HOLE), "PNG")


@functools.cache
def grayscale_jpeg() -> bytes:
    return encode(photo("coffee").convert("L"), "JPEG", quality=90)


@functools.cache
def bilevel_png() -> bytes:
    return encode(photo("chelsea").convert("1"), "PNG")


@functools.cache
def float_tiff() -> bytes:
    """A mode "F" TIFF holding the photo's grey levels scaled to 0..1."""
    grey = np.asarray(photo("chelsea").convert("L"), dtype=np.float32) / 255.0
    return encode(Image.fromarray(grey, mode="F"), "TIFF")


@functools.cache
def lab_tiff() -> bytes:
    from PIL import ImageCms

    transform = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    lab = ImageCms.applyTransform(photo("chelsea"), transform)
    assert lab is not None
    return encode(lab, "TIFF")


@functools.cache
def webp() -> bytes:
    return encode(photo("chelsea"), "WEBP", quality=85)


@functools.cache
def webp_lossless_rgba() -> bytes:
    return encode(_with_alpha_hole(photo("chelsea"), ALPHA_HOLE), "WEBP", lossless=True)


@functools.cache
def webp_animated() -> bytes:
    frames = [photo("chelsea"), photo("chelsea").transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)


@functools.cache
def gif_animated() -> bytes:
    frames = [photo("chelsea"), photo("chelsea").transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)


@functools.cache
def tiff_multipage() -> bytes:
    pages = [photo("chelsea"), photo("coffee")]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:], compression="tiff_lzw")


@functools.cache
def bmp() -> bytes:
    return encode(photo("astronaut"), "BMP")


@functools.cache
def one_pixel_png() -> bytes:
    return encode(Image.new("RGB", (1, 1), (12, 200, 34)), "PNG")


@functools.cache
def progressive_jpeg() -> bytes:
    return encode(photo("coffee"), "JPEG", quality=90, progressive=True)


@functools.cache
def mpo() -> bytes:
    """A two-frame MPO (what many phones write); Pillow's JPEG plugin reports it as "MPO"."""
    frames = [photo("chelsea"), photo("chelsea").resize((225, 150))]
    return encode(frames[0], "MPO", save_all=True, append_images=frames[1:])


@functools.cache
def jpeg_trailing_garbage() -> bytes:
    return encode(photo("chelsea"), "JPEG", quality=90) + b"\x00garbage after EOI" * 64


def _exif_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value  # Orientation
    return exif.tobytes()


@functools.cache
def upright_jpeg() -> bytes:
    return encode(photo("chelsea"), "JPEG", quality=95)


@functools.cache
def exif_rotated_jpeg() -> bytes:
    """The upright photo stored turned 90° counter-clockwise, tagged orientation 6.

    Orientation 6 means "rotate 90° clockwise to display", so a correct decoder shows exactly
    `upright_jpeg`'s picture, 451×300, while the stored pixels are 300×451.
    """
    stored = photo("chelsea").transpose(Image.Transpose.ROTATE_90)
    return encode(stored, "JPEG", quality=95, exif=_exif_orientation(6))


@functools.cache
def large_jpeg() -> bytes:
    """2000×1500 JPEG of the coffee photo, for draft-mode (reduced-scale decode) tests."""
    return encode(
        photo("coffee").resize((2000, 1500), Image.Resampling.BICUBIC), "JPEG", quality=90
    )


@functools.cache
def tall_strip_png() -> bytes:
    """1 x 1,000,000 (4 KB of PNG, 1 Mpx): under the pixel limit, but framed by resizing it
    whole it would need 150 GB (the shorter side to 224 px stretches the long one)."""
    return encode(photo("rocket").resize((1, 1_000_000), Image.Resampling.BILINEAR), "PNG")


@functools.cache
def wide_strip_jpeg() -> bytes:
    """60,000 x 2 JPEG: the same trap lying down, through the JPEG decoder."""
    return encode(photo("coffee").resize((60_000, 2), Image.Resampling.BILINEAR), "JPEG")


ODD_BUT_VALID: dict[str, Callable[[], bytes]] = {
    "cmyk_jpeg": cmyk_jpeg,
    "cmyk_red_jpeg": cmyk_red_jpeg,
    "gradient_16bit_png": gradient_16bit_png,
    "photo_16bit_png": photo_16bit_png,
    "rgb_16bit_png": rgb_16bit_png,
    "palette_transparency_png": palette_transparency_png,
    "la_png": la_png,
    "rgba_png": rgba_png,
    "grayscale_jpeg": grayscale_jpeg,
    "bilevel_png": bilevel_png,
    "float_tiff": float_tiff,
    "lab_tiff": lab_tiff,
    "webp": webp,
    "webp_lossless_rgba": webp_lossless_rgba,
    "webp_animated": webp_animated,
    "gif_animated": gif_animated,
    "tiff_multipage": tiff_multipage,
    "bmp": bmp,
    "one_pixel_png": one_pixel_png,
    "progressive_jpeg": progressive_jpeg,
    "mpo": mpo,
    "jpeg_trailing_garbage": jpeg_trailing_garbage,
    "upright_jpeg": upright_jpeg,
    "exif_rotated_jpeg": exif_rotated_jpeg,
    "large_jpeg": large_jpeg,
    "tall_strip_png": tall_strip_png,
    "wide_strip_jpeg": wide_strip_jpeg,
}


class Expected(NamedTuple):
    format: str
    width: int
    height: int


_CAT = (451, 300)
_COFFEE = (600, 400)
EXPECTED: dict[str, Expected] = {
    "cmyk_jpeg": Expected("JPEG", *_CAT),
    "cmyk_red_jpeg": Expected("JPEG", 64, 48),
    "gradient_16bit_png": Expected("PNG", 256, 16),
    "photo_16bit_png": Expected("PNG", *_CAT),
    "rgb_16bit_png": Expected("PNG", *_CAT),
    "palette_transparency_png": Expected("PNG", *_CAT),
    "la_png": Expected("PNG", *_CAT),
    "rgba_png": Expected("PNG", *_CAT),
    "grayscale_jpeg": Expected("JPEG", *_COFFEE),
    "bilevel_png": Expected("PNG", *_CAT),
    "float_tiff": Expected("TIFF", *_CAT),
    "lab_tiff": Expected("TIFF", *_CAT),
    "webp": Expected("WEBP", *_CAT),
    "webp_lossless_rgba": Expected("WEBP", *_CAT),
    "webp_animated": Expected("WEBP", *_CAT),
    "gif_animated": Expected("GIF", *_CAT),
    "tiff_multipage": Expected("TIFF", *_CAT),
    "bmp": Expected("BMP", 512, 512),
    "one_pixel_png": Expected("PNG", 1, 1),
    "progressive_jpeg": Expected("JPEG", *_COFFEE),
    "mpo": Expected("JPEG", *_CAT),
    "jpeg_trailing_garbage": Expected("JPEG", *_CAT),
    "upright_jpeg": Expected("JPEG", *_CAT),
    "exif_rotated_jpeg": Expected("JPEG", *_CAT),
    "large_jpeg": Expected("JPEG", 2000, 1500),
    "tall_strip_png": Expected("PNG", 1, 1_000_000),
    "wide_strip_jpeg": Expected("JPEG", 60_000, 2),
}


def hostile_samples() -> dict[str, bytes]:
    return {name: build() for name, build in HOSTILE.items()}


def valid_samples() -> dict[str, bytes]:
    return {name: build() for name, build in ODD_BUT_VALID.items()}
