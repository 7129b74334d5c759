"""Dynamic batching, as in Triton's dynamic batcher: concurrent requests are queued and run
together, one call of a (synchronous, batched) function per batch in a worker thread.

A batch closes when it holds `max_batch` items or when its oldest item has waited
`max_wait_s`; items queued while a batch runs make up the next one, so under load batches
form without waiting and an idle server answers a lone request after at most `max_wait_s`.
Only items with the same key share a call (e.g. the same collection, depths and k).

With `concurrency` 2, a second batch starts while the first runs, so the decoding of one
overlaps the forward pass of the other (the forward passes themselves take turns on the
backbone's lock). A batch then takes its share of the queue (queued / free slots, at most
`max_batch`): with 32 clients waiting, two batches of 16 rather than one of 32 and an idle
pipeline stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Key = TypeVar("Key", bound=Hashable)
Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Pending(Generic[Key, Item, Result]):
    key: Key
    item: Item
    future: asyncio.Future[Result]
    queued_at: float = field(default_factory=time.monotonic)


@dataclass
class BatcherStats:
    requests: int = 0
    batches: int = 0  # calls of the batched function, retries of failed batches excluded
    largest: int = 0

    @property
    def mean_batch(self) -> float:
        return self.requests / self.batches if self.batches else 0.0


class DynamicBatcher(Generic[Key, Item, Result]):
    def __init__(
        self,
        run: Callable[[Key, list[Item]], Sequence[Result]],
        *,
        max_batch: int,
        max_wait_s: float,
        concurrency: int = 1,
        name: str = "batcher",
    ):
        """`run(key, items)` returns one result per item, in order. When it raises for a
        batch of several, each item is run alone so one bad item fails only its request.
        At most `concurrency` batches run at once."""
        if max_batch < 1 or max_wait_s < 0 or concurrency < 1:
            raise ValueError(f"{name}: max_batch and concurrency must be >= 1 and max_wait_s >= 0")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.concurrency = concurrency
        self.name = name
        self._running: set[asyncio.Task[None]] = set()
        self.stats = BatcherStats()
        self._queue: deque[_Pending[Key, Item, Result]] = deque()
        self._grown = asyncio.Event()  # set when the queue reaches max_batch
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, key: Key, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(key, item, future))
        if len(self._queue) >= self.max_batch:
            self._grown.set()
        if self._worker is None or self._worker.done():
            # Started on demand and ending when the queue is empty: nothing lingers idle.
            self._worker = asyncio.create_task(self._drain(), name=self.name)
        return await future

    async def _drain(self) -> None:
        while self._queue:
            await self._slot()
            if not self._running:  # idle: the oldest waits a little for company
                oldest = self._queue[0]
                wait = oldest.queued_at + self.max_wait_s - time.monotonic()
                if len(self._queue) < self.max_batch and wait > 0:
                    self._grown.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._grown.wait(), wait)
            if not self._queue:
                break
            # Requests queued while other batches ran have waited already: take this slot's
            # share of them at once.
            free = self.concurrency - len(self._running)
            size = min(self.max_batch, -(-len(self._queue) // free))
            taken = [self._queue.popleft() for _ in range(size)]
            groups: dict[Key, list[_Pending[Key, Item, Result]]] = {}
            for pending in taken:
                if not pending.future.done():  # a cancelled request needs no answer
                    groups.setdefault(pending.key, []).append(pending)
            for key, group in groups.items():
                await self._slot()
                task = asyncio.create_task(self._run_group(key, group))
                self._running.add(task)
                # Held here until done (the loop keeps only weak references to tasks); a
                # later submit starts a new worker, which counts these against its slots.
                task.add_done_callback(self._running.discard)

    async def _slot(self) -> None:
        """Wait until fewer than `concurrency` batches run."""
        while len(self._running) >= self.concurrency:
            await asyncio.wait(set(self._running), return_when=asyncio.FIRST_COMPLETED)

    async def _run_group(self, key: Key, group: list[_Pending[Key, Item, Result]]) -> None:
        self.stats.requests += len(group)
        self.stats.batches += 1
        self.stats.largest = max(self.stats.largest, len(group))
        try:
            results = await asyncio.to_thread(self._call, key, [p.item for p in group])
        except Exception as exc:
            if len(group) == 1:
                _fail(group[0].future, exc)
                return
            log.info(
                "%s: a batch of %d failed (%s); running each alone", self.name, len(group), exc
            )
            for pending in group:
                try:
                    [result] = await asyncio.to_thread(self._call, key, [pending.item])
                except Exception as single:
                    _fail(pending.future, single)
                else:
                    _settle(pending.future, result)
            return
        for pending, result in zip(group, results, strict=True):
            _settle(pending.future, result)

    def _call(self, key: Key, items: list[Item]) -> Sequence[Result]:
        results = self._run(key, items)
        if len(results) != len(items):
            raise RuntimeError(f"{self.name}: {len(items)} items gave {len(results)} results")
        return results


def _settle(future: asyncio.Future[Result], result: Result) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Result], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
