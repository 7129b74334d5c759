"""Framing "auto": each image framed by its size, thumbnails whole and photos with the
ImageNet centre crop, on the CPU path and on the device-decode path alike; new collections
get the default framing, and a collection keeps the framing it was made with."""

from __future__ import annotations

import io
import uuid

import numpy as np
import torch
from photos import photo, png
from PIL import Image

from indexer.backbones.registry import get_backbone
from indexer.core.vocabulary import DEFAULT_FRAMING, FRAMINGS
from indexer.imaging.device_decode import prepare_jpegs
from indexer.imaging.framing import AUTO_WHOLE_BELOW, prepare_pixels
from indexer.imaging.prepare import prepare_one
from service.client import ImageToAdd, StrataClient

PRE = get_backbone("efficientnet_lite0").preprocessing
LIMIT = 64_000_000


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_auto_sees_thumbnails_whole_and_photos_through_the_centre_crop() -> None:
    auto = PRE.framed("auto")
    whole, crop = PRE.framed("whole"), PRE.framed("center-crop")
    edge = round(AUTO_WHOLE_BELOW * PRE.crop)
    assert auto.for_image(32, 32) == whole
    assert auto.for_image(edge - 1, 900) == whole  # the shorter side decides
    assert auto.for_image(edge, edge) == crop
    assert auto.for_image(500, 375) == crop
    # The plain framings ignore an image's size.
    assert whole.for_image(2000, 1500) == whole and crop.for_image(32, 32) == crop

    thumb = photo("chelsea").resize((32, 32), Image.Resampling.BOX)
    big = photo("coffee").resize((500, 375), Image.Resampling.BICUBIC)
    assert np.array_equal(prepare_pixels(thumb, auto), prepare_pixels(thumb, whole))
    assert np.array_equal(prepare_pixels(big, auto), prepare_pixels(big, crop))
    assert not np.array_equal(prepare_pixels(thumb, auto), prepare_pixels(thumb, crop))


def test_auto_decides_by_the_original_size_of_a_draft_decoded_jpeg() -> None:
    """A large JPEG is decoded at a reduced scale; the rule still reads its real size."""
    auto = PRE.framed("auto")
    data = _jpeg(photo("astronaut").resize((1400, 1400), Image.Resampling.BICUBIC))
    prepared = prepare_one("astronaut.jpg", data, auto, LIMIT)
    cropped = prepare_one("astronaut.jpg", data, PRE.framed("center-crop"), LIMIT)
    assert (prepared.width, prepared.height) == (1400, 1400)
    assert np.array_equal(prepared.pixels, cropped.pixels)


def test_device_decode_path_applies_the_same_rule() -> None:
    auto = PRE.framed("auto")
    images = {
        "thumb.jpg": _jpeg(photo("rocket").resize((96, 64), Image.Resampling.BOX)),
        "photo.jpg": _jpeg(photo("rocket").resize((600, 400), Image.Resampling.BICUBIC)),
    }
    on_device = prepare_jpegs(list(images.items()), auto, LIMIT, torch.device("cpu"))
    for (name, data), got in zip(images.items(), on_device, strict=True):
        assert got is not None, name
        framing = "whole" if name == "thumb.jpg" else "center-crop"
        (expected,) = prepare_jpegs([(name, data)], PRE.framed(framing), LIMIT, torch.device("cpu"))
        assert expected is not None
        assert torch.equal(got[4], expected[4]), name
        other = "center-crop" if framing == "whole" else "whole"
        (unlike,) = prepare_jpegs([(name, data)], PRE.framed(other), LIMIT, torch.device("cpu"))
        assert unlike is not None and not torch.equal(got[4], unlike[4]), name


def test_new_collections_get_the_default_and_keep_their_own(client: StrataClient) -> None:
    assert DEFAULT_FRAMING in FRAMINGS and "auto" in FRAMINGS
    made = {}
    try:
        for framing in ("", *FRAMINGS):
            name = f"auto-{uuid.uuid4().hex[:10]}"
            client.create_collection(name, depths=["semantics"], framing=framing)
            made[name] = framing or DEFAULT_FRAMING
        for name, framing in made.items():
            assert client.get_collection(name).framing == framing
    finally:
        for name in made:
            client.delete_collection(name)


def test_an_auto_collection_finds_photos_and_thumbnails_by_their_own_framing(
    client: StrataClient,
) -> None:
    """Photos and thumbnails side by side in one collection: each found by a fresh copy of
    itself (framed as it was at ingest), a thumbnail's vector the whole-framed one."""
    name = f"auto-{uuid.uuid4().hex[:10]}"
    client.create_collection(name, depths=["semantics"], framing="auto")
    whole = f"auto-whole-{uuid.uuid4().hex[:8]}"
    client.create_collection(whole, depths=["semantics"], framing="whole")
    try:
        images = {
            "cat.png": photo("chelsea").resize((600, 400), Image.Resampling.BICUBIC),
            "cup-thumb.png": photo("coffee").resize((48, 32), Image.Resampling.BOX),
            "rocket-thumb.png": photo("rocket").resize((40, 64), Image.Resampling.BOX),
            "astronaut.png": photo("astronaut"),
        }
        for target in (name, whole):
            added = list(
                client.add_images(target, [ImageToAdd(u, png(i)) for u, i in images.items()])
            )
            assert [r.status for r in added] == ["added"] * len(images)
        results = client.search(name, [png(i) for i in images.values()], k=1)
        for uri, result in zip(images, results, strict=True):
            (hits,) = result.results
            assert hits.hits[0].uri == uri and hits.hits[0].score > 0.9999, (uri, hits)
        thumb = png(images["cup-thumb.png"])
        as_auto = np.asarray(client.embed([("q", thumb)], collection=name)[0].vectors[0].values)
        as_whole = np.asarray(client.embed([("q", thumb)], collection=whole)[0].vectors[0].values)
        assert float(as_auto @ as_whole) > 0.9999
    finally:
        client.delete_collection(name)
        client.delete_collection(whole)
