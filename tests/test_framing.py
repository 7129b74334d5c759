"""Collection framing: "center-crop" (the ImageNet recipe) or "whole" (the image uncropped).

Thumbnails and tightly framed photos (CIFAR) keep the object out to the border, which the
centre crop cuts away. A "whole" collection must frame every image that way everywhere it
embeds one: at ingest, for a query image, and in Embed.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import torch
from helpers import cosine
from photos import jpeg, photo, png
from PIL import Image
from test_cli import strata

from indexer.backbones.registry import get_backbone
from indexer.catalog.context import Context
from indexer.core.settings import Settings
from indexer.core.vocabulary import DEFAULT_FRAMING
from indexer.imaging.decode import content_hash
from indexer.imaging.framing import TORCH_BELOW, prepare_pixels
from indexer.imaging.prepare import PreparedImage, one_thread_per_decode, prepare_many
from service.client import ImageToAdd, StrataClient, StrataClientError

T = TypeVar("T")

PRESETS = ("edges", "parts", "semantics")
FILTER = Image.Resampling.BICUBIC  # Lite0's (timm's) resampling filter


def thumbnails() -> list[tuple[str, Image.Image]]:
    """32x32 thumbnails of real photos, the size of CIFAR images."""
    names = (
        "chelsea",
        "coffee",
        "astronaut",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
    )
    return [(f"{name}.png", photo(name).resize((32, 32), Image.Resampling.BOX)) for name in names]


def vectors(embedding: Any) -> dict[str, np.ndarray]:
    return {v.depth: np.asarray(v.values) for v in embedding.vectors}


@pytest.fixture
def make_collection(client: StrataClient) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def make(framing: str = "") -> str:
        name = f"frame-{uuid.uuid4().hex[:10]}"
        client.create_collection(name, framing=framing)
        made.append(name)
        return name

    yield make
    for name in made:
        client.delete_collection(name)


def test_whole_framing_resizes_the_whole_square_image_to_the_input_size() -> None:
    pre = get_backbone("efficientnet_lite0").preprocessing
    thumb = thumbnails()[0][1]
    whole = prepare_pixels(thumb, pre.framed("whole"))
    expected = np.asarray(thumb.resize((pre.crop, pre.crop), FILTER))
    assert whole.shape == (pre.crop, pre.crop, 3)
    # PyTorch's port of Pillow's filter rounds its weights to 16 bits, Pillow to 22.
    assert np.abs(whole.astype(np.int16) - expected).max() <= 2
    # The default recipe magnifies the centre instead: the border is gone.
    assert not np.array_equal(prepare_pixels(thumb, pre), expected)


def test_whole_framing_keeps_the_whole_shorter_side_of_a_wide_image() -> None:
    pre = get_backbone("efficientnet_lite0").preprocessing.framed("whole")
    wide = photo("coffee").resize((300, 200), Image.Resampling.BOX)
    got = prepare_pixels(wide, pre).astype(np.int16)
    resized = wide.resize((336, 224), FILTER)
    expected = np.asarray(resized.crop((56, 0, 280, 224))).astype(np.int16)
    assert got.shape == expected.shape
    # Only the crop window is resampled, so values may differ by rounding, never more.
    assert np.abs(got - expected).max() <= 2


@pytest.mark.parametrize(
    ("name", "size", "interpolation"),
    [
        ("coffee", (500, 375), "bicubic"),  # a photo, shrunk 1.5x
        ("chelsea", (300, 451), "bicubic"),  # portrait: the crop is vertical
        ("rocket", (1000, 640), "bicubic"),  # shrunk 2.5x: still PyTorch's kernels
        ("astronaut", (3000, 2000), "bicubic"),  # shrunk 7.8x: Pillow's reducing path
        ("hubble_deep_field", (90, 120), "bicubic"),  # enlarged
        ("coffee", (640, 480), "bilinear"),  # torchvision backbones' filter
        ("rocket", (24, 2400), "bicubic"),  # strips: Pillow's crop window, not a 150 GB resize
        ("coffee", (3000, 40), "bilinear"),
        ("rocket", (23, 2401), "bicubic"),  # odd sizes: a half-pixel shift would show
        ("coffee", (2403, 300), "bicubic"),
    ],
)
def test_framing_computes_torchvisions_resize_then_centre_crop(
    name: str, size: tuple[int, int], interpolation: str
) -> None:
    """Whichever resampler runs (PyTorch's uint8 kernels below TORCH_BELOW, Pillow's
    crop-window resize above), the pixels are torchvision's ImageNet recipe on the image."""
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize

    image = photo(name).resize(size, Image.Resampling.LANCZOS)
    pre = replace(get_backbone("efficientnet_lite0").preprocessing, interpolation=interpolation)
    recipe = [Resize(pre.resize, InterpolationMode(interpolation)), CenterCrop(pre.crop)]
    expected = np.asarray(recipe[1](recipe[0](image))).astype(np.int16)
    got = prepare_pixels(image, pre)
    assert got.shape == expected.shape == (pre.crop, pre.crop, 3)
    assert got.dtype == np.uint8 and got.flags.c_contiguous
    # Weights rounded to 16 bits (PyTorch) or 22 (Pillow) differ by a grey level here and
    # there; Pillow's shrinking by whole factors first (reducing_gap) rounds once more.
    reduced = min(size) >= TORCH_BELOW * pre.resize
    assert np.abs(got - expected).max() <= 2
    assert np.abs(got - expected).mean() < (0.3 if reduced else 0.01)


def test_decode_pool_threads_run_torch_kernels_alone_and_leave_other_threads_be(
    tmp_path: Path, new_database_url: Callable[[], str]
) -> None:
    """Framing runs torch's kernels in the decode pool: each pool thread on one OpenMP
    thread (the pool spreads images over the cores), while every other thread, such as a
    torch engine's forward pass, keeps all the cores torch was given."""
    given = torch.get_num_threads()
    torch.set_num_threads(2)  # two at least, so the pool's one is a limit on any machine
    settings = Settings.load(
        env={}, data_dir=tmp_path / "data", database_url=new_database_url(), device="cpu"
    )
    ctx = Context.open(settings)
    try:
        assert {ctx.decode_pool.submit(torch.get_num_threads).result() for _ in range(8)} == {1}
        assert torch.get_num_threads() == 2
        with ThreadPoolExecutor(1) as other:  # a thread started after the pool's
            assert other.submit(torch.get_num_threads).result() == 2
    finally:
        ctx.close()
        torch.set_num_threads(given)


class _CountingPool(ThreadPoolExecutor):
    """A real thread pool that counts the work handed to it."""

    handed = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.handed += 1
        return super().submit(fn, *args, **kwargs)


def test_a_lone_image_is_framed_in_the_pool_from_the_main_thread_only() -> None:
    """On the main thread PyTorch's framing would start an OpenMP team that keeps a core
    spinning into the forward pass; other threads (a server's request threads) frame one
    image themselves, without a hand-off to the pool."""
    data = jpeg(photo("chelsea"))
    pre = get_backbone("efficientnet_lite0").preprocessing

    def hand_offs(pool: _CountingPool) -> int:
        before = pool.handed
        [prepared] = prepare_many([("chelsea.jpg", data)], pre, 10**8, pool)
        assert isinstance(prepared, PreparedImage)
        assert prepared.pixels.shape == (224, 224, 3)
        return pool.handed - before

    assert threading.current_thread() is threading.main_thread()
    with _CountingPool(1, initializer=one_thread_per_decode) as pool:
        assert hand_offs(pool) == 1
        with ThreadPoolExecutor(1) as request_thread:
            assert request_thread.submit(hand_offs, pool).result() == 0
        assert hand_offs(pool) == 1


def test_only_ingest_pays_for_the_content_hash_and_thumbnail() -> None:
    """A search, an embedding or a classification prepares images without the hash (1 ms for
    a camera JPEG) or the thumbnail; ingest gets both, the hash of the bytes as sent."""
    data = jpeg(photo("chelsea"))
    pre = get_backbone("efficientnet_lite0").preprocessing
    [plain] = prepare_many([("chelsea.jpg", data)], pre, 10**8)
    [ingest] = prepare_many([("chelsea.jpg", data)], pre, 10**8, for_ingest=True)
    assert isinstance(plain, PreparedImage) and isinstance(ingest, PreparedImage)
    assert plain.content_hash is None and plain.thumbnail is None
    assert ingest.content_hash == content_hash(data)
    assert ingest.thumbnail is not None and ingest.thumbnail.width == 256
    assert np.array_equal(plain.pixels, ingest.pixels)


def test_a_collection_reports_its_framing(client: StrataClient, make_collection: Any) -> None:
    assert client.get_collection(make_collection()).framing == DEFAULT_FRAMING
    assert client.get_collection(make_collection("center-crop")).framing == "center-crop"
    assert client.get_collection(make_collection("whole")).framing == "whole"


def test_an_unknown_framing_is_refused_by_name(client: StrataClient) -> None:
    name = f"frame-{uuid.uuid4().hex[:10]}"
    with pytest.raises(StrataClientError) as caught:
        client.create_collection(name, framing="sideways")
    assert caught.value.code == "INVALID_ARGUMENT"
    assert "sideways" in caught.value.details and "whole" in caught.value.details
    assert name not in {c.name for c in client.list_collections()}


def test_embed_in_a_whole_collection_sees_the_uncropped_image(
    client: StrataClient, make_collection: Any
) -> None:
    whole, cropped = make_collection("whole"), make_collection("center-crop")
    for uri, thumb in thumbnails()[:3]:
        # The thumbnail upscaled to 224 and framed by a 16 px border to 256: the centre crop
        # of that is exactly what "whole" framing makes of the thumbnail.
        framed = Image.new("RGB", (256, 256), (0, 0, 0))
        framed.paste(thumb.resize((224, 224), FILTER), (16, 16))
        as_whole = vectors(client.embed([(uri, png(thumb))], collection=whole)[0])
        as_framed = vectors(client.embed([(uri, png(framed))], collection=cropped)[0])
        as_cropped = vectors(client.embed([(uri, png(thumb))], collection=cropped)[0])
        for depth in PRESETS:
            assert cosine(as_whole[depth], as_framed[depth]) > 0.9999, (uri, depth)
            assert cosine(as_whole[depth], as_cropped[depth]) < 0.999, (uri, depth)


def test_ingest_and_query_use_the_collection_framing(
    client: StrataClient, make_collection: Any
) -> None:
    whole = make_collection("whole")
    thumbs = thumbnails()
    added = list(client.add_images(whole, [ImageToAdd(uri, png(t)) for uri, t in thumbs]))
    assert [r.status for r in added] == ["added"] * len(thumbs)
    results = client.search(whole, [png(t) for _, t in thumbs], k=1)
    for (uri, _), result in zip(thumbs, results, strict=True):
        for depth_hits in result.results:
            top = depth_hits.hits[0]
            # The query is framed as the stored image was, so it finds itself exactly.
            assert top.uri == uri and top.score > 0.9999, (uri, depth_hits.depth, top)


def test_cli_creates_a_whole_collection(server: Any, client: StrataClient) -> None:
    name = f"cli-{uuid.uuid4().hex[:10]}"
    done = strata(
        "collections", "create", name, "--framing", "whole", "--server", server.address, "--json"
    )
    try:
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["framing"] == "whole"
    finally:
        if name in {c.name for c in client.list_collections()}:
            client.delete_collection(name)
