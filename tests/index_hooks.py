"""A hook into `strata index` for tests that stop it at a known point: after a stream has
sent a given number of images, call a function (send SIGINT, kill the server) and hold
every stream for half a second so that the command acts on it before sending more."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from service.client import ImageToAdd, StrataClient


def call_after_sending(images_sent: int, then: Callable[[], None]) -> Callable[[], None]:
    """Patch StrataClient.add_images; returns the function that puts it back."""
    original = StrataClient.add_images
    lock = threading.Lock()
    fired_at: list[float] = []

    def add_images(self: StrataClient, collection: str, images: Iterable[ImageToAdd]) -> Any:
        def watched() -> Iterator[ImageToAdd]:
            for number, image in enumerate(images, 1):
                yield image
                with lock:
                    if number == images_sent and not fired_at:
                        fired_at.append(time.monotonic())
                        then()
                if fired_at:
                    time.sleep(max(0.0, fired_at[0] + 0.5 - time.monotonic()))

        return original(self, collection, watched())

    StrataClient.add_images = add_images  # type: ignore[method-assign]

    def restore() -> None:
        StrataClient.add_images = original  # type: ignore[method-assign]

    return restore
