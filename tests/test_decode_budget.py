"""The process-wide decode budget (indexer/imaging/budget.py): large images decode a few at
a time, whatever thread they arrive on; small ones pass. Real PNG and JPEG bytes, real
decodes, real threads."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from indexer.imaging import budget
from indexer.imaging.budget import PixelBudget, decoded_pixels
from indexer.imaging.framing import Preprocessing
from indexer.imaging.prepare import prepare_one

LITE0 = Preprocessing(224, 224, (0.5,) * 3, (0.5,) * 3, "bicubic", whole_below=224)


def encoded(size: tuple[int, int], kind: str, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, kind)
    return buffer.getvalue()


def test_decoded_pixels_reads_the_header_and_counts_jpeg_draft_scale() -> None:
    assert decoded_pixels(encoded((600, 400), "PNG"), 336) == 600 * 400
    # A 3000x2000 JPEG decodes at 1/4 (shorter side 500 >= 336), a 1024x768 one at 1/2.
    assert decoded_pixels(encoded((3000, 2000), "JPEG"), 336) == 750 * 500
    assert decoded_pixels(encoded((1024, 768), "JPEG"), 336) == 512 * 384
    assert decoded_pixels(encoded((1024, 768), "JPEG"), None) == 1024 * 768
    assert decoded_pixels(b"not an image", 336) == 0  # the decoder names the file instead


def test_holds_past_the_budget_wait_and_an_image_larger_than_it_runs_alone() -> None:
    pool = PixelBudget(100)
    order: list[str] = []
    first_in, release_first = threading.Event(), threading.Event()

    def first() -> None:
        with pool.hold(60):
            order.append("first in")
            first_in.set()
            release_first.wait(30)
            order.append("first out")

    def second(pixels: int, name: str) -> None:
        with pool.hold(pixels):
            order.append(f"{name} in")

    holder = threading.Thread(target=first)
    holder.start()
    assert first_in.wait(30)
    small = threading.Thread(target=second, args=(30, "small"))
    small.start()
    small.join(30)  # fits beside the first
    waiting = threading.Thread(target=second, args=(60, "large"))
    huge = threading.Thread(target=second, args=(500, "huge"))
    waiting.start()
    huge.start()
    waiting.join(0.3)
    assert waiting.is_alive() and huge.is_alive()  # neither fits while the first holds 60
    release_first.set()
    for thread in (holder, waiting, huge):
        thread.join(30)
    assert order[:3] == ["first in", "small in", "first out"]
    assert sorted(order[3:]) == ["huge in", "large in"]
    assert pool.in_use == 0 and pool.peak == 500  # the huge one ran alone (else 560)


def test_concurrent_large_decodes_stay_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Six 12 Mpx PNGs on six threads (one-image requests decode on their own request
    thread): with a budget of two such images, never more than two decode at once; every
    image still comes out framed."""
    shared = PixelBudget(2 * 4000 * 3000 + 1)
    monkeypatch.setattr(budget, "DECODE_BUDGET", shared)
    data = encoded((4000, 3000), "PNG")
    results: list[tuple[int, ...]] = []

    def run(n: int) -> None:
        prepared = prepare_one(f"big-{n}.png", data, LITE0, 64_000_000, for_ingest=True)
        results.append(tuple(prepared.pixels.shape))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert results == [(224, 224, 3)] * 6
    assert shared.peak == 2 * 4000 * 3000 and shared.in_use == 0
