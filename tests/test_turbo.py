"""The JPEG fast path (`indexer.imaging.turbo`): TurboJPEG's pixels must equal Pillow's to the
bit, at every draft scale, subsampling and EXIF orientation, or vectors stored through one
decoder would drift from queries decoded by the other. What it declines goes to Pillow."""

from __future__ import annotations

import io

import image_samples as samples
import numpy as np
import pytest
from PIL import Image

from indexer.core.errors import InvalidImage
from indexer.imaging.decode import _TRANSPOSE, decode_image
from indexer.imaging.turbo import jpeg_pixels

#: No database here: the PostgreSQL pass skips this module (tests/conftest.py).
pytestmark = pytest.mark.database_free


def pillow_pixels(data: bytes, min_side: int | None) -> np.ndarray:
    """What the decoder gave before the fast path: Pillow's draft, load and transpose."""
    with Image.open(io.BytesIO(data)) as src:
        if min_side is not None:
            src.draft("RGB", (min_side, min_side))
        src.load()
        orientation = int(src.getexif().get(0x0112, 1))
        image = src.convert("RGB")
    if orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])
    return np.asarray(image)


def jpeg(size: tuple[int, int], **params: object) -> bytes:
    photo = samples.photo("coffee").resize(size, Image.Resampling.BICUBIC)
    return samples.encode(photo, "JPEG", quality=90, **params)


@pytest.mark.parametrize(
    ("size", "params"),
    [
        ((500, 375), {}),  # 4:2:0, Pillow's default
        ((501, 377), {"subsampling": 1}),  # 4:2:2, odd sides
        ((640, 480), {"subsampling": 0}),  # 4:4:4
        ((600, 400), {"progressive": True}),
    ],
)
@pytest.mark.parametrize("min_side", [None, 100, 200, 336])
def test_fast_path_pixels_equal_pillows(
    size: tuple[int, int], params: dict[str, object], min_side: int | None
) -> None:
    data = jpeg(size, **params)
    decoded = decode_image(data, name="photo.jpg", min_side=min_side)
    assert isinstance(decoded.source, np.ndarray), "a plain JPEG should take the fast path"
    expected = pillow_pixels(data, min_side)
    assert decoded.source.shape == expected.shape
    assert np.array_equal(decoded.source, expected)
    assert (decoded.width, decoded.height) == size


def test_fast_path_at_every_draft_scale() -> None:
    data = jpeg((2000, 1500))
    shapes = set()
    for min_side in (100, 188, 189, 375, 376, 751, 1500):
        decoded = decode_image(data, name="big.jpg", min_side=min_side)
        assert isinstance(decoded.source, np.ndarray)
        assert np.array_equal(decoded.source, pillow_pixels(data, min_side))
        shapes.add(decoded.source.shape)
    assert len(shapes) == 4  # scales 1/8, 1/4, 1/2 and 1 were all reached


@pytest.mark.parametrize("orientation", range(1, 9))
def test_fast_path_turns_every_exif_orientation_as_pillow(orientation: int) -> None:
    # Non-square, so a wrong turn cannot even match in shape.
    photo = samples.photo("chelsea").resize((300, 200), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = samples.encode(photo, "JPEG", quality=90, exif=exif.tobytes())
    decoded = decode_image(data, name=f"turned-{orientation}.jpg")
    assert isinstance(decoded.source, np.ndarray)
    assert decoded.source.flags.c_contiguous and decoded.source.flags.writeable
    assert np.array_equal(decoded.source, pillow_pixels(data, None))
    assert (decoded.width, decoded.height) == decoded.source.shape[1::-1]


@pytest.mark.parametrize("sample", ["cmyk_jpeg", "grayscale_jpeg"])
def test_jpegs_needing_a_conversion_take_pillows_path(sample: str) -> None:
    decoded = decode_image(samples.ODD_BUT_VALID[sample](), name=sample)
    assert isinstance(decoded.source, Image.Image) and decoded.source.mode == "RGB"


def test_damaged_jpeg_is_declined_and_refused_by_pillow_naming_the_item() -> None:
    data = samples.truncated_jpeg()
    with Image.open(io.BytesIO(data)) as src:
        size = src.size
    assert jpeg_pixels(data, size, size) is None
    with pytest.raises(InvalidImage, match=r"cut\.jpg.*truncated"):
        decode_image(data, name="cut.jpg")


def test_a_scale_pillow_would_not_choose_is_declined() -> None:
    data = jpeg((640, 480))
    assert jpeg_pixels(data, (640, 480), (320, 240)) is not None
    # 5/8 of the size: TurboJPEG could scale by 5/8, Pillow's draft never does.
    assert jpeg_pixels(data, (640, 480), (400, 300)) is None


@pytest.mark.parametrize("side", [3, 9, 15])
def test_tiny_jpegs_decode_as_pillows_at_any_min_side(side: int) -> None:
    # Below 16 px two TurboJPEG scales can round to one size: such a draft goes to Pillow.
    tiny = samples.photo("chelsea").resize((side, side), Image.Resampling.BICUBIC)
    data = samples.encode(tiny, "JPEG", quality=90)
    for min_side in (1, 2, side):
        decoded = decode_image(data, name="tiny.jpg", min_side=min_side)
        assert np.array_equal(np.asarray(decoded.image), pillow_pixels(data, min_side))
