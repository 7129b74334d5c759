"""Image bytes -> framed uint8 pixels, ready for a backbone: safe decode and framing on the
CPU (in a thread pool), or JPEGs on the model's device. A bad image yields its error."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from indexer.core.errors import StrataError
from indexer.imaging.budget import decoding
from indexer.imaging.decode import DecodedImage, content_hash, decode_image
from indexer.imaging.device_decode import prepare_jpegs
from indexer.imaging.framing import Preprocessing, prepare_pixels
from indexer.imaging.thumbnail import Thumbnail, make_thumbnail, thumbnail_from_bytes


@dataclass(frozen=True)
class PreparedImage:
    name: str
    #: SHA-256 hex of the bytes, for ingest (`for_ingest`); None when not asked: a search,
    #: an embedding or a classification needs none (1 ms for a 2.3 MB camera JPEG).
    content_hash: str | None
    width: int
    height: int
    #: HxWx3 uint8, ready for the backbone; a tensor on the model's device when the JPEG
    #: was decoded there (indexer.device_decode).
    pixels: np.ndarray | torch.Tensor
    #: A bounded JPEG for pages that show the item (indexer.imaging.thumbnail), when asked.
    thumbnail: Thumbnail | None = None


#: JPEG draft decoding (1/2..1/8 scale in libjpeg) keeps the shorter side at least this many
#: times the resize target. The DCT-domain shrink is a crude filter: stopping at the target
#: itself moved semantics vectors of fine textures (grass, gravel) to cosine 0.97 of a full
#: decode. With 1.5x left for the bicubic resize the worst of skimage's textures tiled at
#: full resolution (3000x2000, 1024x768) stays at 0.9946 and mixed photos at 0.9986, while
#: a 1024x768 photo decodes at 1/2 and a 3000x2000 one at 1/4: decode + framing of a mixed
#: folder costs 36% less CPU than with 2x (bench/README, ingest).
DRAFT_MARGIN = 1.5


def one_thread_per_decode() -> None:
    """Initializer of decode-pool threads: torch's kernels (framing) run on the calling
    thread alone. The pool already spreads images over the cores; an OpenMP team for each
    of its threads would make cores x cores threads on a many-core machine, all contending
    with the forward pass's."""
    torch.get_num_threads()  # torch sets up this thread's OpenMP first, else it undoes the limit
    threadpool_limits(1, user_api="openmp")  # omp_set_num_threads: this thread's setting only


def prepare_one(
    name: str, data: bytes, pre: Preprocessing, max_pixels: int, for_ingest: bool = False
) -> PreparedImage:
    """Decode and frame one image; `for_ingest` adds its content hash and thumbnail. Its
    pixels count against the process's decode budget until it is framed (budget.py)."""
    min_side = round(DRAFT_MARGIN * pre.resize)
    with decoding(data, min_side):
        decoded: DecodedImage = decode_image(
            data, name=name, max_pixels=max_pixels, min_side=min_side
        )
        return PreparedImage(
            name=name,
            content_hash=content_hash(data) if for_ingest else None,
            width=decoded.width,
            height=decoded.height,
            pixels=prepare_pixels(decoded.source, pre, (decoded.width, decoded.height)),
            # From the pixels decoded for the network: ingest never decodes an image twice.
            thumbnail=make_thumbnail(decoded.source) if for_ingest else None,
        )


def prepare_many(
    named_bytes: Sequence[tuple[str, bytes]],
    pre: Preprocessing,
    max_pixels: int,
    executor: Executor | None = None,
    decode_device: torch.device | None = None,
    for_ingest: bool = False,
) -> list[PreparedImage | StrataError]:
    """Decode and preprocess each image; a bad one yields its error, the rest go on.

    With `decode_device`, plain JPEGs are decoded and framed on that device first; the rest
    (other formats, anything the device decoder refuses) take the CPU path.
    With `for_ingest`, each prepared image carries its content hash and thumbnail.
    """
    done: list[PreparedImage | StrataError | None] = [None] * len(named_bytes)
    if decode_device is not None:
        for i, on_device in enumerate(
            prepare_jpegs(named_bytes, pre, max_pixels, decode_device, executor)
        ):
            if on_device is not None:
                done[i] = PreparedImage(*on_device)
        if for_ingest:  # the device path hashes every image as it checks it
            _add_thumbnails(done, named_bytes, max_pixels, executor)
    rest = [i for i, outcome in enumerate(done) if outcome is None]
    for i, outcome in zip(
        rest,
        _prepare_on_cpu([named_bytes[i] for i in rest], pre, max_pixels, executor, for_ingest),
        strict=True,
    ):
        done[i] = outcome
    return [outcome for outcome in done if outcome is not None]


def _prepare_on_cpu(
    named_bytes: Sequence[tuple[str, bytes]],
    pre: Preprocessing,
    max_pixels: int,
    executor: Executor | None,
    for_ingest: bool = False,
) -> list[PreparedImage | StrataError]:

    def run(item: tuple[str, bytes]) -> PreparedImage | StrataError:
        try:
            return prepare_one(item[0], item[1], pre, max_pixels, for_ingest)
        except StrataError as exc:
            return exc

    if executor is None:
        return [run(item) for item in named_bytes]
    if len(named_bytes) == 1 and threading.current_thread() is not threading.main_thread():
        # One image: framed here, without a hand-off (a server's request threads). Not on the
        # main thread: there PyTorch frames with an OpenMP team whose second thread spins on
        # after the work and takes a core from the forward pass next (a lone library search
        # 14.7 ms there against 4.9 ms on a pool thread, 2026-12-07, bench/README).
        return [run(named_bytes[0])]
    return list(executor.map(run, named_bytes))


def _add_thumbnails(
    done: list[PreparedImage | StrataError | None],
    named_bytes: Sequence[tuple[str, bytes]],
    max_pixels: int,
    executor: Executor | None,
) -> None:
    """Thumbnails of the images decoded on the device, whose pixels there are already
    framed: a second, reduced-scale CPU decode (libjpeg at 1/2..1/8) makes them."""
    todo = [i for i, outcome in enumerate(done) if isinstance(outcome, PreparedImage)]

    def run(i: int) -> Thumbnail | None:
        name, data = named_bytes[i]
        try:
            return thumbnail_from_bytes(data, name, max_pixels)
        except StrataError:
            return None  # the device decoded it; the item just goes without a thumbnail

    made = map(run, todo) if executor is None else executor.map(run, todo)
    for i, thumbnail in zip(todo, made, strict=True):
        outcome = done[i]
        if isinstance(outcome, PreparedImage):
            done[i] = replace(outcome, thumbnail=thumbnail)
