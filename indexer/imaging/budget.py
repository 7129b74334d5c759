"""A process-wide bound on the pixels being decoded at once.

Each decode thread bounds itself (max_pixels), but nothing bounded them together: six
requests of a 200 KB single-colour PNG of 64 Mpx each decoded at once took 5 GB (about
700 MB each: Pillow's 4-byte pixels, the RGB copy, the thumbnail's array). Requests that
carry one image decode on their own request thread, so no pool size bounds them either.
Now an image's decode, framing and thumbnail hold its pixel count against one budget;
past it, the next large image waits for one to finish. Small images (and JPEGs, decoded at
a reduced scale) take little of it and rarely wait.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image

from indexer.core.vocabulary import MAX_PIXELS
from indexer.imaging.decode import ALLOWED_FORMATS

#: Pixels decoded at once in this process: two of the largest images a server accepts by
#: default, about 1.4 GB at their peak. An image larger than the budget runs alone.
DEFAULT_BUDGET = 2 * MAX_PIXELS
_JPEG = b"\xff\xd8\xff"
_FORMATS = sorted(ALLOWED_FORMATS)  # the decoder's: no other plugin reads the header


class PixelBudget:
    def __init__(self, capacity: int = DEFAULT_BUDGET):
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0  # the most held at once, for tests and curious operators
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Hold `pixels` of the budget while the block runs; waits while others hold too
        much (an image larger than the whole budget waits until it can run alone)."""
        with self._changed:
            self._changed.wait_for(lambda: not self.in_use or self.in_use + pixels <= self.capacity)
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= pixels
                self._changed.notify_all()


def decoded_pixels(data: bytes, min_side: int | None) -> int:
    """How many pixels decoding `data` will produce, from its header (0 when the header
    cannot be read: the decoder then refuses the file with its own message). A JPEG
    decodes at the 1/2..1/8 scale that keeps its shorter side >= `min_side`."""
    try:
        with Image.open(io.BytesIO(data), formats=_FORMATS) as header:
            width, height = header.size
    except Exception:  # refused properly by the decoder, which names the file
        return 0
    scale = 1
    if min_side is not None and data.startswith(_JPEG):
        while scale < 8 and min(width, height) // (scale * 2) >= min_side:
            scale *= 2
    return (width // scale) * (height // scale)


#: The budget every decode in this process shares.
DECODE_BUDGET = PixelBudget()


@contextmanager
def decoding(data: bytes, min_side: int | None) -> Iterator[None]:
    """Hold `data`'s decoded pixels against the shared budget while the block runs."""
    with DECODE_BUDGET.hold(decoded_pixels(data, min_side)):
        yield
