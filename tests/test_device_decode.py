"""JPEG decoding on the model's device (indexer/device_decode.py).

On a GPU it runs on nvJPEG; the same code runs on the CPU through torchvision's libjpeg,
which is how these tests exercise it here: a server with device_decode="on" must store the
same vectors (cosine >= 0.99) as the Pillow path, turn EXIF-rotated photos upright, and send
every file it does not handle to the CPU path, which refuses bad input by name.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import image_samples as samples
import numpy as np
import pytest
import torch
from conftest import ServerHandle
from helpers import cosine
from photos import photo, photo_jpeg
from PIL import Image, ImageOps

from indexer.backbones.registry import get_backbone
from indexer.core.settings import Settings, SettingsError
from indexer.engine.extract import to_batch
from indexer.imaging.device_decode import decode_device, prepare_jpegs, read_header, upright
from indexer.imaging.prepare import prepare_one
from service.client import ImageToAdd, StrataClient

PRESETS = ("edges", "parts", "semantics")
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "camera")
CPU = torch.device("cpu")


def vectors(client: StrataClient, collection: str, images: list[tuple[str, bytes]]) -> Any:
    return [
        {v.depth: np.asarray(v.values, dtype=np.float64) for v in e.vectors}
        for e in client.embed(images, collection=collection)
    ]


@pytest.fixture(scope="module")
def device_server(make_server: Callable[..., ServerHandle]) -> ServerHandle:
    return make_server(device_decode="on")


@pytest.fixture
def pair(
    server: ServerHandle, device_server: ServerHandle
) -> Iterator[tuple[StrataClient, StrataClient, str]]:
    """A collection of the same name on the CPU-decoding and the device-decoding server."""
    name = f"dev-{uuid.uuid4().hex[:10]}"
    with StrataClient(server.address) as cpu, StrataClient(device_server.address) as dev:
        cpu.create_collection(name)
        dev.create_collection(name)
        yield cpu, dev, name
        cpu.delete_collection(name)
        dev.delete_collection(name)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_matches_pillow_for_every_exif_orientation(orientation: int) -> None:
    stored = np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = Image.fromarray(stored)
    image.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(image))
    got = upright(torch.from_numpy(stored).permute(2, 0, 1), orientation).permute(1, 2, 0)
    assert np.array_equal(got.numpy(), expected)


def test_the_device_path_takes_plain_complete_jpegs_only() -> None:
    limit = 64_000_000
    assert read_header(photo_jpeg("chelsea"), limit) is not None
    assert read_header(samples.grayscale_jpeg(), limit) is not None
    rotated = read_header(samples.exif_rotated_jpeg(), limit)
    assert rotated is not None and (rotated.width, rotated.height, rotated.orientation) == (
        451,
        300,
        6,
    )
    for name in ("cmyk_jpeg", "truncated_jpeg", "header_only_jpeg", "jpeg_trailing_garbage"):
        assert read_header(getattr(samples, name)(), limit) is None, name
    assert read_header(samples.rgba_png(), limit) is None
    assert read_header(photo_jpeg("chelsea"), 1000) is None  # over the pixel limit


def test_device_framing_matches_the_pillow_framing() -> None:
    pre = get_backbone("efficientnet_lite0").preprocessing
    jpeg = samples.large_jpeg()
    (prepared,) = prepare_jpegs([("large.jpg", jpeg)], pre, 64_000_000, CPU)
    assert prepared is not None
    name, _, width, height, pixels = prepared
    assert (name, width, height, tuple(pixels.shape)) == ("large.jpg", 2000, 1500, (224, 224, 3))
    reference = prepare_one("large.jpg", jpeg, pre, 64_000_000).pixels
    difference = np.abs(pixels.numpy().astype(np.int16) - np.asarray(reference, np.int16))
    assert difference.mean() < 3.0, difference.mean()


def test_headers_and_hashes_read_in_the_decode_pool_give_the_same_batch() -> None:
    pre = get_backbone("efficientnet_lite0").preprocessing
    files = [(f"{p}.jpg", photo_jpeg(p)) for p in PHOTOS[:3]]
    files.insert(1, ("cmyk.jpg", samples.cmyk_jpeg()))  # the CPU path's: stays None, in place
    files.append(("rotated.jpg", samples.exif_rotated_jpeg()))
    alone = prepare_jpegs(files, pre, 64_000_000, CPU)
    with ThreadPoolExecutor(2) as pool:
        pooled = prepare_jpegs(files, pre, 64_000_000, CPU, pool)
    assert [p is None for p in pooled] == [False, True, False, False, False]
    for (name, data), one, other in zip(files, alone, pooled, strict=True):
        if one is None or other is None:
            assert one is None and other is None
            continue
        assert one[:4] == other[:4] and one[0] == name
        assert one[1] == hashlib.sha256(data).hexdigest()
        assert torch.equal(one[4], other[4])
    assert pooled[-1] is not None and pooled[-1][2:4] == (451, 300)  # turned upright


def test_a_batch_mixes_device_tensors_and_cpu_arrays() -> None:
    array = np.full((4, 4, 3), 7, dtype=np.uint8)
    batch = to_batch([torch.ones((4, 4, 3), dtype=torch.uint8), array])
    assert batch.shape == (2, 4, 4, 3) and batch[1].eq(7).all()


def test_device_decoding_stores_the_vectors_the_cpu_path_stores(
    pair: tuple[StrataClient, StrataClient, str],
) -> None:
    cpu, dev, name = pair
    images = [(f"{p}.jpg", photo_jpeg(p)) for p in PHOTOS] + [
        ("large.jpg", samples.large_jpeg()),
        ("grey.jpg", samples.grayscale_jpeg()),
        ("progressive.jpg", samples.progressive_jpeg()),
    ]
    found = zip(images, vectors(cpu, name, images), vectors(dev, name, images), strict=True)
    for (uri, _), a, b in found:
        for depth in PRESETS:
            assert cosine(a[depth], b[depth]) >= 0.99, (uri, depth, cosine(a[depth], b[depth]))


def test_device_decoding_turns_exif_rotated_photos_upright(
    pair: tuple[StrataClient, StrataClient, str],
) -> None:
    _, dev, name = pair
    upright_twin, rotated = vectors(
        dev,
        name,
        [("upright.jpg", samples.upright_jpeg()), ("rotated.jpg", samples.exif_rotated_jpeg())],
    )
    for depth in PRESETS:
        assert cosine(upright_twin[depth], rotated[depth]) >= 0.99, depth


def test_files_the_device_path_skips_are_judged_by_the_cpu_path(
    pair: tuple[StrataClient, StrataClient, str],
) -> None:
    _, dev, name = pair
    sent = {
        "truncated.jpg": samples.truncated_jpeg(),
        "cmyk.jpg": samples.cmyk_jpeg(),
        "bomb.png": samples.png_bomb(),
        "photo.png": samples.encode(photo("coffee"), "PNG"),
        "photo.jpg": photo_jpeg("coffee"),
    }
    results = list(dev.add_images(name, [ImageToAdd(u, d) for u, d in sent.items()]))
    outcome = {r.uri: (r.status, r.error.code, r.error.message) for r in results}
    for uri in ("truncated.jpg", "bomb.png"):
        status, code, message = outcome[uri]
        assert (status, code) == ("failed", "INVALID_ARGUMENT") and uri in message, outcome[uri]
    for uri in ("cmyk.jpg", "photo.png", "photo.jpg"):
        assert outcome[uri][0] == "added", outcome[uri]


def test_decode_device_setting() -> None:
    cuda = torch.device("cuda")
    assert decode_device("auto", cuda) == cuda
    assert decode_device("auto", CPU) is None
    assert decode_device("on", CPU) == CPU
    assert decode_device("off", cuda) is None
    with pytest.raises(SettingsError, match="device_decode 'gpu'"):
        Settings.load(env={"STRATA_DEVICE_DECODE": "gpu"})


@pytest.mark.gpu
def test_nvjpeg_decodes_on_the_gpu() -> None:
    pre = get_backbone("efficientnet_lite0").preprocessing
    cuda = torch.device("cuda")
    images = [(f"{p}.jpg", photo_jpeg(p)) for p in PHOTOS]
    prepared = prepare_jpegs(images, pre, 64_000_000, cuda)
    on_cpu = prepare_jpegs(images, pre, 64_000_000, CPU)
    for gpu, cpu in zip(prepared, on_cpu, strict=True):
        assert gpu is not None and cpu is not None and gpu[4].device.type == "cuda"
        difference = (gpu[4].cpu().to(torch.int16) - cpu[4].to(torch.int16)).abs().float()
        assert difference.mean() < 3.0
