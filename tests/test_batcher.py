"""Dynamic batching of concurrent searches: the generic batcher (results per item, batch
limits, keys, failures and cancellations stay per request), and the service's Search over
real gRPC, where concurrent single-image searches share forward passes and answer exactly
as the same searches do one at a time."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from photos import photo_crops, photo_jpeg

from indexer.catalog import search as search_module
from service.batcher import DynamicBatcher
from service.client import ImageToAdd, StrataClient


def doubling(calls: list[tuple[str, list[int]]], pause_s: float = 0.02) -> Callable:
    def run(key: str, items: list[int]) -> list[int]:
        calls.append((key, list(items)))
        time.sleep(pause_s)  # a forward pass: requests arriving meanwhile queue up
        if any(i < 0 for i in items):
            raise ValueError(f"negative item in {items}")
        return [2 * i for i in items]

    return run


def test_concurrent_items_are_batched_and_answered_in_order() -> None:
    calls: list[tuple[str, list[int]]] = []

    async def main() -> list[int]:
        batcher = DynamicBatcher(doubling(calls), max_batch=8, max_wait_s=0.005)

        async def one(i: int) -> int:
            await asyncio.sleep(0.001 * (i % 5))  # staggered arrivals
            return await batcher.submit("k", i)

        results = await asyncio.gather(*(one(i) for i in range(60)))
        assert batcher.stats.requests == 60 and batcher.stats.batches == len(calls)
        return results

    assert asyncio.run(main()) == [2 * i for i in range(60)]
    sizes = [len(items) for _, items in calls]
    assert sum(sizes) == 60 and max(sizes) <= 8
    assert len(calls) < 60 / 2, f"batches of {sizes}: batching did not happen"


def test_only_items_with_the_same_key_share_a_call() -> None:
    calls: list[tuple[str, list[int]]] = []

    async def main() -> list[int]:
        batcher = DynamicBatcher(doubling(calls), max_batch=32, max_wait_s=0.01)
        return await asyncio.gather(*(batcher.submit(f"key{i % 3}", i) for i in range(30)))

    assert asyncio.run(main()) == [2 * i for i in range(30)]
    for key, items in calls:
        assert {f"key{i % 3}" for i in items} == {key}
    assert len(calls) < 30


def test_a_failing_item_fails_only_its_own_request() -> None:
    calls: list[tuple[str, list[int]]] = []

    async def main() -> list[Any]:
        batcher = DynamicBatcher(doubling(calls, 0.0), max_batch=16, max_wait_s=0.01)
        items = [1, 2, -3, 4, 5]
        return await asyncio.gather(
            *(batcher.submit("k", i) for i in items), return_exceptions=True
        )

    results = asyncio.run(main())
    assert results[:2] == [2, 4] and results[3:] == [8, 10]
    assert isinstance(results[2], ValueError) and "-3" in str(results[2])
    assert calls[0] == ("k", [1, 2, -3, 4, 5])  # tried together first, then one by one
    assert len(calls) == 1 + 5


def test_a_cancelled_request_is_left_out() -> None:
    calls: list[tuple[str, list[int]]] = []

    async def main() -> list[int]:
        batcher = DynamicBatcher(doubling(calls, 0.0), max_batch=16, max_wait_s=0.05)
        tasks = [asyncio.create_task(batcher.submit("k", i)) for i in range(3)]
        await asyncio.sleep(0)  # all three queued; the batch waits up to 50 ms for more
        tasks[1].cancel()
        return [await tasks[0], await tasks[2]]

    assert asyncio.run(main()) == [0, 4]
    assert calls == [("k", [0, 2])]


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        DynamicBatcher(doubling([]), max_batch=0, max_wait_s=0.01)
    with pytest.raises(ValueError, match="concurrency"):
        DynamicBatcher(doubling([]), max_batch=8, max_wait_s=0.01, concurrency=0)


def test_with_concurrency_two_batches_overlap_and_never_more() -> None:
    """Two batches in flight at once (one decoding while the other runs forward), never a
    third; the waiting requests are split between the free slots; all answered in order."""
    lock = threading.Lock()
    running, most, calls = [0], [0], []

    def run(key: str, items: list[int]) -> list[int]:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            calls.append(list(items))
        time.sleep(0.03)
        with lock:
            running[0] -= 1
        return [2 * i for i in items]

    async def main() -> list[int]:
        batcher = DynamicBatcher(run, max_batch=32, max_wait_s=0.002, concurrency=2)

        async def client(number: int) -> list[int]:  # closed loop: the next after the answer
            return [await batcher.submit("k", number * 100 + j) for j in range(6)]

        answers = await asyncio.gather(*(client(n) for n in range(32)))
        return [a for per_client in answers for a in per_client]

    with ThreadPoolExecutor(4) as pool:
        loop = asyncio.new_event_loop()
        loop.set_default_executor(pool)
        try:
            results = loop.run_until_complete(main())
        finally:
            loop.close()
    assert results == [2 * (n * 100 + j) for n in range(32) for j in range(6)]
    assert most[0] == 2, f"at most {most[0]} batches ran at once"
    assert sum(len(c) for c in calls) == 32 * 6
    assert max(len(c) for c in calls) < 32, "a full queue went to one batch, not two shares"


# -- the service: single-image searches over real gRPC -----------------------------------------


def _hits(result: Any) -> dict[str, list[tuple[int, float]]]:
    return {d.depth: [(h.id, h.score) for h in d.hits] for d in result.results}


def _assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for depth, hits in expected.items():
        assert [i for i, _ in got[depth]] == [i for i, _ in hits], depth
        for (_, a), (_, b) in zip(got[depth], hits, strict=True):
            assert a == pytest.approx(b, abs=1e-4), depth


def test_concurrent_single_image_searches_share_forward_passes(
    client: StrataClient, collection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ("astronaut", "chelsea", "coffee", "rocket", "retina", "colorwheel")
    images = {f"{n}.jpg": photo_jpeg(n) for n in names}
    images.update(dict(photo_crops(6)))
    added = list(client.add_images(collection, (ImageToAdd(u, d) for u, d in images.items())))
    assert all(r.status == "added" for r in added)
    queries = list(images.values())[:8]

    # One at a time (each a batch of one), and all in one multi-query request (no batcher).
    alone = [_hits(client.search(collection, [q], k=5)[0]) for q in queries]
    together = client.search(collection, queries, k=5)
    for expected, result in zip(alone, together, strict=True):
        _assert_same(_hits(result), expected)

    # Count the library's search calls: each is one forward pass for its image queries.
    calls: list[int] = []
    real_search = search_module.search

    def counting_search(ctx: Any, name: str, batch: Sequence[Any], *args: Any) -> Any:
        calls.append(len(batch))
        return real_search(ctx, name, batch, *args)

    monkeypatch.setattr(search_module, "search", counting_search)
    requests = 24
    start = threading.Barrier(requests)

    def one(position: int) -> dict:
        start.wait(30)
        return _hits(client.search(collection, [queries[position % len(queries)]], k=5)[0])

    with ThreadPoolExecutor(requests) as pool:
        results = list(pool.map(one, range(requests)))
    for position, result in enumerate(results):
        _assert_same(result, alone[position % len(queries)])
    assert sum(calls) == requests
    assert len(calls) < requests, f"search calls per batch: {calls}"
