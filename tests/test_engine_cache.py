"""Engines from Embed calls naming arbitrary layer sets: one engine per set whatever its
order, at most MAX_ENGINES kept (least recently used dropped), and a new set's build never
holds up calls whose engine exists."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest
from conftest import ServerHandle

from indexer.engine.factory import MAX_ENGINES
from service.client import StrataClient

LAYERS = ["blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4", "blocks.5", "blocks.6"]


def _engines(server: ServerHandle) -> list[tuple[tuple[str, ...], str, bool]]:
    backbone = server.running.ctx.backbones.get("efficientnet_lite0")
    return backbone.engines.cached()


def test_layer_order_shares_one_engine_and_vectors_match(
    client: StrataClient, server: ServerHandle, small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    images = small_jpegs(2, seed=81)
    one = client.embed(images, depths=["blocks.1", "blocks.4"])
    before = len(_engines(server))
    other = client.embed(images, depths=["blocks.4", "blocks.1"])
    assert len(_engines(server)) == before
    for a, b in zip(one, other, strict=True):
        first = {d.depth: np.array(d.values) for d in a.vectors}
        second = {d.depth: np.array(d.values) for d in b.vectors}
        assert first.keys() == second.keys() == {"blocks.1", "blocks.4"}
        for depth in first:
            assert np.allclose(first[depth], second[depth], atol=1e-6), depth


@pytest.mark.slow
def test_engines_are_bounded_and_built_outside_the_hot_path(
    make_server: Callable[..., ServerHandle], small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    server = make_server()
    images = small_jpegs(1, seed=82)
    with server.client(timeout=300) as client:
        client.embed(images, depths=["blocks.2"])  # the "hot" engine, built first
        sets = [[LAYERS[i], LAYERS[j]] for i in range(7) for j in range(i + 1, 7)]
        stop = threading.Event()
        slowest: list[float] = []

        def hot() -> None:
            with server.client(timeout=300) as other:
                while not stop.is_set():
                    began = time.monotonic()
                    other.embed(images, depths=["blocks.2"])
                    slowest.append(time.monotonic() - began)

        worker = threading.Thread(target=hot)
        worker.start()
        try:
            for layers in sets[: MAX_ENGINES + 2]:
                client.embed(images, depths=layers)
        finally:
            stop.set()
            worker.join(120)
        cached = _engines(server)
        assert len(cached) <= MAX_ENGINES, cached
        assert slowest, "the hot caller never ran"
    print(
        f"{len(sets[: MAX_ENGINES + 2])} new sets; hot-path calls: {len(slowest)}, "
        f"slowest {max(slowest):.2f}s"
    )
