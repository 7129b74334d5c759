"""Tests of the safe decode path for untrusted image bytes (`indexer.images`)."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import image_samples as samples
import numpy as np
import pytest
from PIL import EpsImagePlugin, Image, ImageFile

from indexer.core.errors import InvalidImage, InvalidInput
from indexer.core.vocabulary import MAX_PIXELS
from indexer.imaging.decode import (
    ALLOWED_FORMATS,
    DecodedImage,
    content_hash,
    decode_image,
)

#: No database here: the PostgreSQL pass skips this module (tests/conftest.py).
pytestmark = pytest.mark.database_free

REPO_ROOT = Path(__file__).resolve().parents[1]


def pixels(decoded: DecodedImage) -> np.ndarray:
    return np.asarray(decoded.image, dtype=np.int16)


def photo_pixels(which: str = "chelsea") -> np.ndarray:
    return np.asarray(samples.photo(which), dtype=np.int16)


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


# --- public constants ------------------------------------------------------------------------


def test_public_constants() -> None:
    assert frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"}) == ALLOWED_FORMATS
    assert MAX_PIXELS == 64_000_000
    assert issubclass(InvalidImage, InvalidInput)


def test_content_hash_is_sha256_of_raw_bytes() -> None:
    data = samples.upright_jpeg()
    assert content_hash(data) == hashlib.sha256(data).hexdigest()
    assert len(content_hash(b"")) == 64
    assert content_hash(data) != content_hash(data + b"\x00")


# --- hostile ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sample", sorted(samples.HOSTILE))
def test_hostile_sample_is_refused_naming_item(sample: str) -> None:
    data = samples.HOSTILE[sample]()
    name = f"uploads/{sample}.bin"
    with pytest.raises(InvalidImage) as caught:
        decode_image(data, name=name)
    error = caught.value
    assert name in error.message
    assert samples.HOSTILE_REASON[sample] in error.message.lower()
    assert error.hint, "every refusal says how to fix it"
    assert error.__cause__ is None or isinstance(error.__cause__, InvalidImage)


@pytest.mark.parametrize("sample", samples.BOMBS)
def test_bomb_refused_fast_without_big_allocation(sample: str) -> None:
    data = samples.HOSTILE[sample]()
    tracemalloc.start()
    try:
        started = time.perf_counter()
        with pytest.raises(InvalidImage, match="decompression bomb"):
            decode_image(data, name=sample)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0
    # tracemalloc sees only Python-level allocations; the RSS test below covers Pillow's C heap.
    assert peak < 100 * 1024 * 1024


# VmHWM, not getrusage's ru_maxrss: the latter keeps the parent's peak across exec, so under a
# pytest that has loaded models it would not move at all.
_RSS_PROBE = """
import json, sys, time
from indexer.core.errors import InvalidImage
from indexer.imaging.decode import decode_image

def peak_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

data = open(sys.argv[1], "rb").read()
before = peak_kib()
started = time.perf_counter()
try:
    decode_image(data, name="bomb")
    refused = False
except InvalidImage:
    refused = True
elapsed = time.perf_counter() - started
after = peak_kib()
print(json.dumps({"refused": refused, "elapsed": elapsed, "grew_kib": after - before}))
"""


@pytest.mark.parametrize("sample", ["png_bomb", "gif_65535"])
def test_bomb_refused_without_growing_rss(sample: str, tmp_path: Path) -> None:
    # A fresh process, so its own peak RSS before the call is a meaningful baseline and the
    # C-level allocations that tracemalloc cannot see are counted too.
    path = tmp_path / f"{sample}.bin"
    path.write_bytes(samples.HOSTILE[sample]())
    result = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["refused"]
    assert report["elapsed"] < 1.0
    assert report["grew_kib"] < 100 * 1024


@pytest.mark.parametrize("sample", samples.BOMBS)
def test_bomb_refused_even_with_pillow_limit_disabled(
    sample: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some libraries set Image.MAX_IMAGE_PIXELS = None process-wide; our header check still holds.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    started = time.perf_counter()
    with pytest.raises(InvalidImage, match=r"decompression bomb: \d+×\d+ = \d+ pixels") as caught:
        decode_image(samples.HOSTILE[sample](), name=sample)
    assert time.perf_counter() - started < 1.0
    assert f"limit of {MAX_PIXELS}" in caught.value.message


def test_pillow_limit_still_applies_above_our_limit() -> None:
    # 100 Mpx: over Pillow's default MAX_IMAGE_PIXELS (~89.5 Mpx), where Pillow only *warns*.
    # The warning is made an error locally, so the effective limit is the lower of the two.
    data = samples.png_zero_bomb(10_000, 10_000)
    with pytest.raises(InvalidImage) as caught:
        decode_image(data, name="big.png", max_pixels=200_000_000)
    assert "decompression bomb: the header claims 100000000 pixels" in caught.value.message
    assert f"limit of {Image.MAX_IMAGE_PIXELS}" in caught.value.message


def test_max_pixels_is_checked_from_header() -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_image(samples.upright_jpeg(), name="cat.jpg", max_pixels=451 * 300 - 1)
    assert "'cat.jpg': decompression bomb: 451×300 = 135300 pixels" in caught.value.message
    assert decode_image(samples.upright_jpeg(), name="cat.jpg", max_pixels=451 * 300).width == 451


def test_max_pixels_counts_the_stored_frame_of_a_rotated_jpeg() -> None:
    with pytest.raises(InvalidImage, match="decompression bomb"):
        decode_image(samples.exif_rotated_jpeg(), name="rot.jpg", max_pixels=1000)


def test_truncated_jpeg_message_and_hint() -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_image(samples.truncated_jpeg(), name="cat.jpg")
    assert caught.value.message.startswith(
        "'cat.jpg': truncated JPEG data (image file is truncated"
    )
    assert caught.value.hint == "re-export or re-download the file"


def test_truncation_is_not_enabled_globally() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_eps_never_reaches_pillows_eps_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    # The EPS plugin is what would run Ghostscript; it must not even be asked to parse.
    calls: list[str] = []

    def spy(self: object) -> None:
        calls.append("EpsImageFile._open")
        raise AssertionError("EPS plugin consulted")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", spy)
    with pytest.raises(InvalidImage, match="EPS"):
        decode_image(samples.eps(), name="drawing.eps")
    assert calls == []


@pytest.mark.parametrize(
    "exc",
    [
        OSError("broken data stream"),
        SyntaxError("not a PNG file"),
        ValueError("tile cannot extend outside image"),
        struct.error("unpack requires a buffer of 4 bytes"),
        EOFError(),
        IndexError("list index out of range"),
        KeyError("mode"),
        ZeroDivisionError("division by zero"),
        TypeError("bad tile"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_any_pillow_exception_becomes_invalid_image(
    exc: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_load(self: ImageFile.ImageFile) -> None:
        raise exc

    monkeypatch.setattr(ImageFile.ImageFile, "load", broken_load)
    # A PNG: a plain JPEG's pixels come from TurboJPEG, which never calls Pillow's load
    # (tests/test_turbo.py covers what it declines).
    png = samples.encode(samples.photo("chelsea"), "PNG")
    with pytest.raises(InvalidImage) as caught:
        decode_image(png, name="cat.png")
    assert caught.value.message.startswith("'cat.png': ")
    assert "PNG" in caught.value.message


def test_bad_parameters_are_programming_errors() -> None:
    with pytest.raises(ValueError):
        decode_image(samples.upright_jpeg(), name="x", max_pixels=0)
    with pytest.raises(ValueError):
        decode_image(samples.upright_jpeg(), name="x", min_side=0)


def test_concurrent_decodes_stay_correct() -> None:
    # catch_warnings() is process-wide state; our own header check must hold regardless.
    work = [(name, True) for name in samples.BOMBS] + [
        (name, False) for name in ("upright_jpeg", "rgba_png", "gradient_16bit_png", "webp")
    ]

    def run(job: tuple[str, bool]) -> bool:
        name, hostile = job
        build = samples.HOSTILE[name] if hostile else samples.ODD_BUT_VALID[name]
        try:
            decode_image(build(), name=name)
        except InvalidImage:
            return hostile
        return not hostile

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(pool.map(run, work * 10))


# --- odd but valid ----------------------------------------------------------------------------


@pytest.mark.parametrize("sample", sorted(samples.ODD_BUT_VALID))
def test_odd_but_valid_sample_decodes_to_rgb(sample: str) -> None:
    expected = samples.EXPECTED[sample]
    decoded = decode_image(samples.ODD_BUT_VALID[sample](), name=sample)
    assert decoded.image.mode == "RGB"
    assert decoded.format == expected.format
    assert (decoded.width, decoded.height) == (expected.width, expected.height)
    assert decoded.image.size == (expected.width, expected.height)
    # Detached from the source file and fully loaded: usable after decode_image returns.
    assert not isinstance(decoded.image, ImageFile.ImageFile)
    assert np.asarray(decoded.image).shape == (expected.height, expected.width, 3)


@pytest.mark.parametrize(
    "sample", ["rgba_png", "la_png", "palette_transparency_png", "webp_lossless_rgba"]
)
def test_transparent_pixels_become_white(sample: str) -> None:
    got = pixels(decode_image(samples.ODD_BUT_VALID[sample](), name=sample))
    left, top, right, bottom = samples.ALPHA_HOLE
    assert (got[top:bottom, left:right] == 255).all()
    # Opaque pixels keep the photo (grey for LA, quantised for the palette).
    reference = photo_pixels()
    if sample == "la_png":
        reference = np.asarray(samples.photo("chelsea").convert("L").convert("RGB"), dtype=np.int16)
    opaque = np.ones(got.shape[:2], dtype=bool)
    opaque[top:bottom, left:right] = False
    tolerance = 12.0 if sample == "palette_transparency_png" else 1.0
    assert mean_abs_diff(got[opaque], reference[opaque]) < tolerance


def test_16bit_gradient_maps_to_full_8bit_range() -> None:
    got = pixels(decode_image(samples.gradient_16bit_png(), name="ramp.png"))
    assert got.min() == 0 and got.max() == 255
    # Column x held x*257, which is exactly 8-bit x: scaled, not clipped to white.
    assert (got[:, :, 0] == np.arange(256)).all()
    assert (got[:, :, 0] == got[:, :, 1]).all() and (got[:, :, 1] == got[:, :, 2]).all()


@pytest.mark.parametrize("sample", ["photo_16bit_png", "float_tiff"])
def test_high_depth_grey_photo_matches_8bit(sample: str) -> None:
    got = pixels(decode_image(samples.ODD_BUT_VALID[sample](), name=sample))
    grey = np.asarray(samples.photo("chelsea").convert("L").convert("RGB"), dtype=np.int16)
    assert mean_abs_diff(got, grey) < 0.6


def test_16bit_rgb_photo_matches_8bit() -> None:
    got = pixels(decode_image(samples.rgb_16bit_png(), name="rgb16.png"))
    assert mean_abs_diff(got, photo_pixels()) < 0.6


def test_cmyk_red_stays_red() -> None:
    got = pixels(decode_image(samples.cmyk_red_jpeg(), name="red.jpg"))
    red, green, blue = got.reshape(-1, 3).mean(axis=0)
    assert red > 200 and green < 60 and blue < 60


def test_cmyk_photo_matches_rgb_photo() -> None:
    got = pixels(decode_image(samples.cmyk_jpeg(), name="cmyk.jpg"))
    assert mean_abs_diff(got, photo_pixels()) < 6.0


def test_lab_tiff_matches_rgb_photo() -> None:
    got = pixels(decode_image(samples.lab_tiff(), name="lab.tif"))
    assert mean_abs_diff(got, photo_pixels()) < 4.0


def test_grayscale_jpeg_becomes_grey_rgb() -> None:
    got = pixels(decode_image(samples.grayscale_jpeg(), name="grey.jpg"))
    assert (got[:, :, 0] == got[:, :, 1]).all() and (got[:, :, 1] == got[:, :, 2]).all()


def test_bilevel_png_is_black_and_white() -> None:
    got = pixels(decode_image(samples.bilevel_png(), name="bw.png"))
    assert set(np.unique(got)) <= {0, 255}


def test_one_pixel_png() -> None:
    decoded = decode_image(samples.one_pixel_png(), name="dot.png")
    assert decoded.image.getpixel((0, 0)) == (12, 200, 34)


def test_trailing_garbage_after_jpeg_is_ignored() -> None:
    clean = pixels(decode_image(samples.upright_jpeg(), name="clean.jpg"))
    garbage = pixels(decode_image(samples.jpeg_trailing_garbage(), name="garbage.jpg"))
    assert mean_abs_diff(clean, garbage) < 2.0  # quality 95 vs 90 of the same photo


@pytest.mark.parametrize("sample", ["webp_animated", "gif_animated", "tiff_multipage"])
def test_multi_frame_uses_first_frame(sample: str) -> None:
    got = pixels(decode_image(samples.ODD_BUT_VALID[sample](), name=sample))
    first = photo_pixels()
    flipped = first[:, ::-1]
    assert mean_abs_diff(got, first) < 12.0
    if sample != "tiff_multipage":  # frame 2 of the animations is the mirrored photo
        assert mean_abs_diff(got, first) < mean_abs_diff(got, flipped) / 2


def test_mpo_is_reported_as_jpeg() -> None:
    decoded = decode_image(samples.mpo(), name="phone.jpg")
    assert decoded.format == "JPEG"
    assert mean_abs_diff(pixels(decoded), photo_pixels()) < 3.0


# --- EXIF orientation -------------------------------------------------------------------------


def test_exif_rotated_jpeg_matches_upright_twin() -> None:
    upright = decode_image(samples.upright_jpeg(), name="upright.jpg")
    rotated = decode_image(samples.exif_rotated_jpeg(), name="rotated.jpg")
    assert (rotated.width, rotated.height) == (upright.width, upright.height) == (451, 300)
    assert mean_abs_diff(pixels(rotated), pixels(upright)) < 2.0
    # And against the wrong rotation it is far off (the check has teeth).
    wrong = np.asarray(
        samples.photo("chelsea").transpose(Image.Transpose.ROTATE_180), dtype=np.int16
    )
    assert mean_abs_diff(pixels(rotated), wrong) > 20.0


def test_corrupt_exif_costs_orientation_not_item() -> None:
    # An EXIF block whose IFD offset points past its end: pixels are fine, EXIF is not.
    data = samples.encode(samples.photo("chelsea"), "JPEG", exif=b"MM\x00*\x00\x00\xff\xff")
    decoded = decode_image(data, name="odd-exif.jpg")
    assert (decoded.width, decoded.height) == (451, 300)


# --- draft mode -------------------------------------------------------------------------------


def test_draft_decodes_jpeg_at_reduced_scale() -> None:
    decoded = decode_image(samples.large_jpeg(), name="big.jpg", min_side=224)
    assert (decoded.width, decoded.height) == (2000, 1500)
    assert decoded.image.mode == "RGB"
    shorter = min(decoded.image.size)
    assert 224 <= shorter < 1500
    # 1/4 scale: 1/8 would give a shorter side of 188 < 224.
    assert decoded.image.size == (500, 375)
    # Same picture as a full decode resized to that size.
    full = decode_image(samples.large_jpeg(), name="big.jpg").image
    resized = np.asarray(full.resize(decoded.image.size, Image.Resampling.BOX), dtype=np.int16)
    assert mean_abs_diff(pixels(decoded), resized) < 6.0


def test_draft_keeps_shorter_side_at_least_min_side() -> None:
    for min_side in (100, 188, 189, 375, 376, 751, 1500, 4000):
        decoded = decode_image(samples.large_jpeg(), name="big.jpg", min_side=min_side)
        assert min(decoded.image.size) >= min(min_side, 1500)
        assert (decoded.width, decoded.height) == (2000, 1500)


def test_draft_on_exif_rotated_jpeg_reports_upright_original_size() -> None:
    decoded = decode_image(samples.exif_rotated_jpeg(), name="rotated.jpg", min_side=100)
    assert (decoded.width, decoded.height) == (451, 300)
    width, height = decoded.image.size
    assert width > height and height >= 100 and height < 300


def test_draft_on_progressive_jpeg() -> None:
    decoded = decode_image(samples.progressive_jpeg(), name="prog.jpg", min_side=100)
    assert (decoded.width, decoded.height) == (600, 400)
    assert 100 <= min(decoded.image.size) < 400


def test_min_side_is_ignored_for_non_jpeg() -> None:
    decoded = decode_image(samples.webp(), name="cat.webp", min_side=50)
    assert decoded.image.size == (451, 300)
