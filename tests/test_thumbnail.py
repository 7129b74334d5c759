"""Thumbnails (`indexer.imaging.thumbnail`): bounded, upright, close to a careful resize of the
full image, the same from a Pillow image or from the JPEG fast path's array."""

from __future__ import annotations

import io

import image_samples as samples
import numpy as np
import pytest
from PIL import Image

from indexer.imaging.decode import decode_image
from indexer.imaging.thumbnail import (
    THUMBNAIL_MEDIA_TYPE,
    make_thumbnail,
    thumbnail_from_bytes,
)

#: No database here: the PostgreSQL pass skips this module (tests/conftest.py).
pytestmark = pytest.mark.database_free


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / mse)


def opened(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return np.asarray(image.convert("RGB"))


def test_thumbnail_is_bounded_and_close_to_a_lanczos_resize() -> None:
    photo = samples.photo("chelsea")  # 451x300
    thumbnail = make_thumbnail(np.array(photo))
    assert thumbnail.media_type == THUMBNAIL_MEDIA_TYPE
    assert (thumbnail.width, thumbnail.height) == (256, 170)
    pixels = opened(thumbnail.data)
    assert pixels.shape == (170, 256, 3)
    reference = np.asarray(photo.resize((256, 170), Image.Resampling.LANCZOS))
    assert psnr(pixels, reference) > 30.0
    # And far from the wrong picture (the check has teeth).
    assert psnr(pixels, reference[::-1]) < 20.0


def test_pillow_image_and_array_give_the_same_thumbnail() -> None:
    photo = samples.photo("coffee")
    assert make_thumbnail(photo).data == make_thumbnail(np.array(photo)).data


def test_small_image_keeps_its_size() -> None:
    small = samples.photo("chelsea").resize((120, 80))
    thumbnail = make_thumbnail(np.array(small))
    assert (thumbnail.width, thumbnail.height) == (120, 80)
    assert psnr(opened(thumbnail.data), np.asarray(small)) > 30.0


def test_thumbnail_from_bytes_is_upright() -> None:
    upright = opened(thumbnail_from_bytes(samples.upright_jpeg(), "up.jpg", 10**8).data)
    turned = opened(thumbnail_from_bytes(samples.exif_rotated_jpeg(), "turned.jpg", 10**8).data)
    assert upright.shape == turned.shape == (170, 256, 3)
    assert psnr(turned, upright) > 30.0


def test_thumbnail_of_a_draft_decoded_photo_matches_the_full_decode() -> None:
    data = samples.large_jpeg()  # 2000x1500, decoded at 1/4 for a 256 px thumbnail
    small = decode_image(data, name="big.jpg", min_side=256)
    full = decode_image(data, name="big.jpg")
    from_draft = opened(make_thumbnail(small.source).data)
    from_full = opened(make_thumbnail(full.source).data)
    assert from_draft.shape == from_full.shape == (192, 256, 3)
    assert psnr(from_draft, from_full) > 30.0
