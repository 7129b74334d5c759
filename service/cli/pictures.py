"""Pictures the CLI writes where people would rather look than read: image grids (search
neighbours per depth, top images per channel), Grad-CAM overlays and confusion matrices.

Images of stored items are read on the CLI side: the item's uri as a local file, else its
thumbnail from the Browse service when the server has one; the server never reads a path.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

#: Grid geometry: square cells of CELL px, a caption strip under each, a title column.
CELL = 128
CAPTION = 18
TITLE_WIDTH = 112
PAD = 4
CAPTION_FONT_PX = 11
BACKGROUND = (255, 255, 255)
MISSING = (200, 200, 200)


@dataclass(frozen=True)
class Cell:
    image: Image.Image | None  # None: shown as a grey tile
    caption: str


def grid_size(rows: int, columns: int) -> tuple[int, int]:
    """(width, height) in pixels of a grid of `rows` x `columns` cells."""
    return TITLE_WIDTH + columns * (CELL + PAD) + PAD, rows * (CELL + CAPTION + PAD) + PAD


def image_grid(rows: Sequence[tuple[str, Sequence[Cell]]]) -> Image.Image:
    """One row per (title, cells); rows shorter than the longest leave blank cells."""
    columns = max((len(cells) for _, cells in rows), default=0)
    canvas = Image.new("RGB", grid_size(len(rows), columns), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = _caption_font()
    for r, (title, cells) in enumerate(rows):
        top = PAD + r * (CELL + CAPTION + PAD)
        title = _fit(draw, font, title, TITLE_WIDTH - PAD)
        draw.text((PAD, top + CELL // 2 - 6), title, fill=(0, 0, 0), font=font)
        for c, cell in enumerate(cells):
            left = TITLE_WIDTH + PAD + c * (CELL + PAD)
            if cell.image is None:
                draw.rectangle((left, top, left + CELL - 1, top + CELL - 1), fill=MISSING)
            else:
                tile = ImageOps.contain(cell.image.convert("RGB"), (CELL, CELL))
                canvas.paste(
                    tile, (left + (CELL - tile.width) // 2, top + (CELL - tile.height) // 2)
                )
            caption = _fit(draw, font, cell.caption, CELL)
            draw.text((left, top + CELL + 3), caption, fill=(40, 40, 40), font=font)
    return canvas


@functools.cache
def _caption_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans, which matplotlib ships (the charts' font too): Pillow's bitmap default
    draws a space one pixel wide, so "#19 0.325" read as "#190.325"."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(str(path), CAPTION_FONT_PX)
    except OSError:  # a matplotlib without its fonts: Pillow's own scalable one
        return ImageFont.load_default(size=CAPTION_FONT_PX)


def _fit(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    text: str,
    width: int,
) -> str:
    """`text`, cut with an ellipsis to fit `width` px in `font` (the longest cut that fits,
    found by bisection: long uris are common)."""
    if draw.textlength(text, font=font) <= width:
        return text
    fits, too_long = 0, len(text)
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if draw.textlength(text[:middle] + "…", font=font) <= width:
            fits = middle
        else:
            too_long = middle
    return text[:fits] + "…"


def overlay(framed_png: bytes, heatmap: np.ndarray, alpha: float = 0.45) -> Image.Image:
    """The heatmap (0..1), upsampled to the network's input, blended over it in 'jet'."""
    from matplotlib import colormaps

    base = Image.open(io.BytesIO(framed_png)).convert("RGB")
    heat = Image.fromarray(np.asarray(heatmap, np.float32), mode="F")
    heat = heat.resize(base.size, Image.Resampling.BILINEAR)
    coloured = colormaps["jet"](np.clip(np.asarray(heat), 0.0, 1.0))[..., :3]
    blended = (1 - alpha) * np.asarray(base, np.float32) + alpha * 255.0 * coloured
    return Image.fromarray(blended.clip(0, 255).astype(np.uint8))


def write_confusion(classes: Sequence[str], matrix: np.ndarray, title: str, path: Path) -> str:
    """A confusion matrix (rows true, columns predicted) with counts, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    side = max(3.5, 0.45 * n + 2)
    figure, axes = plt.subplots(figsize=(side, side))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(n), classes, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(n), classes, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=10)
    peak = matrix.max() if matrix.size else 0
    if n <= 30:
        for i in range(n):
            for j in range(n):
                colour = "white" if matrix[i, j] > peak / 2 else "black"
                axes.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=colour)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return str(path)


class ItemImages:
    """Images of stored items for grids: the uri as a local file, else a Browse thumbnail."""

    def __init__(self, client: Any, collection: str):
        self._client = client
        self._collection = collection
        self._thumbnails: Callable[[Sequence[int]], dict[int, bytes]] | None = _thumbnail_reader(
            client, collection
        )

    def fetch(self, items: Sequence[tuple[int, str]]) -> dict[int, Image.Image | None]:
        out: dict[int, Image.Image | None] = {}
        missing = []
        for item_id, uri in items:
            image = open_local(uri)
            out[item_id] = image
            if image is None:
                missing.append(item_id)
        if missing and self._thumbnails is not None:
            try:
                found = self._thumbnails(missing)
            except Exception:  # no Browse service on this server: grey tiles
                self._thumbnails = None
                found = {}
            for item_id, data in found.items():
                out[item_id] = decode_image(data)
        return out


def open_local(uri: str) -> Image.Image | None:
    try:
        path = Path(uri)
        return decode_image(path.read_bytes()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def decode_image(data: bytes) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(data))
        image.draft("RGB", (CELL * 2, CELL * 2))  # JPEG: decode at a reduced scale
        return ImageOps.exif_transpose(image).convert("RGB")
    except Exception:
        return None


def _thumbnail_reader(
    client: Any, collection: str
) -> Callable[[Sequence[int]], dict[int, bytes]] | None:
    """GetThumbnails of the Browse service, when its generated code is here."""
    try:
        from service.generated.strata.v1 import browse_pb2, browse_pb2_grpc
    except ImportError:
        return None
    channel = getattr(client, "_channel", None)
    if channel is None:
        return None
    stub = browse_pb2_grpc.BrowseStub(channel)

    def read(ids: Sequence[int]) -> dict[int, bytes]:
        request = browse_pb2.GetThumbnailsRequest(collection=collection, ids=list(ids))
        answer = client._call(stub.GetThumbnails, request)
        return {t.id: t.data for t in answer.thumbnails if t.data}

    return read
