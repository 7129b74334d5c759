"""The ingest roofline: the CPU cost a photo takes in each stage of `strata index` measured
alone, in this process, through the library the server runs, and the rate their sum allows.

    decode+frame  safe decode (JPEG at reduced scale), framing, thumbnail, content hash
    forward       the server's engine at its batch size, the collection's depths
    write         SQL (items, vectors, thumbnails in one transaction) + FAISS add

Each stage runs over the same photos as the end-to-end run; its cost is CPU seconds per
image over every thread of this process (time.process_time), so a stage that spreads over
both cores is charged for both. With C cores kept busy, the stages together allow
C / (sum of per-image costs) images/s; whatever end to end loses against that is gRPC,
protobuf, the client, queues and idle cores.

A shared VM's speed drifts by tens of percent within minutes, so `Roofline` is set up once
and measured next to each end-to-end run: each run is compared with the stages as the
machine ran them then, not with one measurement taken minutes later.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


def _cpu(work: Callable[[], T]) -> tuple[T, float, float]:
    """Run `work`; its result, CPU seconds (all threads) and wall seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return result, time.process_time() - cpu, time.perf_counter() - wall


class Roofline:
    """The stages over `paths`, set up once (library context, engine built and warmed);
    `measure()` times them, as often as asked, each time into a new collection."""

    def __init__(
        self,
        paths: Sequence[Path],
        data_dir: Path,
        env: dict[str, str],
        depths: Sequence[str],
        framing: str = "center-crop",
    ) -> None:
        from indexer.catalog.context import Context
        from indexer.core.settings import Settings
        from indexer.imaging.prepare import one_thread_per_decode

        self._settings = Settings.load(env={**env, "STRATA_DEVICE": "cpu"}, data_dir=data_dir)
        self._ctx = Context.open(self._settings)
        self._depths, self._framing = list(depths), framing
        self._named = [(p.name, p.read_bytes()) for p in paths]
        self._decoder = ThreadPoolExecutor(1, initializer=one_thread_per_decode)
        self._measured = 0
        # Every measurement's collection has the same backbone, framing and depths.
        first = self._new_collection()
        self._backbone = self._ctx.backbones.get(first.backbone)
        self._pre = self._backbone.spec.preprocessing.framed(first.framing)
        self._layers = [d.layer for d in first.depths]
        self._pooling = first.pooling
        # Engine build and first-shape warm-up, outside every measurement.
        self._embed(self._prepare(self._named[: self._settings.batch_size]))

    def _prepare(self, named: Sequence[tuple[str, bytes]]) -> list[Any]:
        from indexer.imaging.prepare import PreparedImage, prepare_many

        # One image at a time on one thread set up as the server's decode-pool threads are
        # (torch's kernels on that thread alone): single-threaded is the stage's cost.
        prepared = prepare_many(
            named, self._pre, self._settings.max_pixels, self._decoder, for_ingest=True
        )
        images = [p for p in prepared if isinstance(p, PreparedImage)]
        if len(images) != len(named):
            raise SystemExit(f"roofline: {len(named) - len(images)} photos failed to decode")
        return images

    def _embed(self, images: Sequence[Any]) -> Any:
        from indexer.engine.extract import embed_prepared

        batch = self._settings.batch_size
        return embed_prepared(self._backbone, images, self._layers, self._pooling, batch)

    def __enter__(self) -> Roofline:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._decoder.shutdown()
        self._ctx.close()

    def _new_collection(self) -> Any:
        from indexer.catalog.collections import create_collection

        self._measured += 1
        name = f"roofline{self._measured}"
        return create_collection(self._ctx, name, depths=self._depths, framing=self._framing)

    def measure(self) -> dict[str, Any]:
        """Per-image CPU seconds of each stage, and the rate their sum allows."""
        import numpy as np

        from indexer.catalog.ingest import ItemToWrite, write_items

        ctx, settings, n = self._ctx, self._settings, len(self._named)
        collection = self._new_collection()
        images, decode_cpu, _ = _cpu(lambda: self._prepare(self._named))
        features, forward_cpu, forward_wall = _cpu(lambda: self._embed(images))

        indexes = {d.name: ctx.indexes.get(collection.id, d.name, d.dim) for d in collection.depths}
        entries = [
            ItemToWrite(i.name, i.content_hash, i.width, i.height, thumbnail=i.thumbnail)
            for i in images
        ]

        def write() -> None:
            batch = settings.batch_size
            for start in range(0, n, batch):
                chunk = entries[start : start + batch]
                vectors = {k: v[start : start + batch] for k, v in features.vectors.items()}
                with ctx.sessions.begin() as session:
                    written = write_items(session, collection, chunk, vectors)
                ids = np.array([item_id for _, item_id in written.stored], dtype=np.int64)
                for depth in collection.depths:
                    indexes[depth.name].add(ids, vectors[depth.layer])

        _, write_cpu, _ = _cpu(write)
        stages = {
            "decode_frame": decode_cpu / n,
            "forward": forward_cpu / n,
            "write": write_cpu / n,
        }
        return _summary(stages, n, settings.batch_size, n / forward_wall)


def _summary(
    stages: dict[str, float], images: int, batch_size: int, forward_wall_rate: float
) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    total = sum(stages.values())
    return {
        "images": images,
        "cores": cores,
        "batch_size": batch_size,
        "cpu_ms_per_image": {k: round(v * 1000, 2) for k, v in stages.items()},
        "total_cpu_ms_per_image": round(total * 1000, 2),
        "forward_wall_images_per_s": round(forward_wall_rate, 1),
        "allowed_images_per_s": round(cores / total, 1),
    }


def median(measured: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median of each stage over several measurements, summed again."""
    first = measured[0]
    stages = {
        k: statistics.median(m["cpu_ms_per_image"][k] for m in measured) / 1000
        for k in first["cpu_ms_per_image"]
    }
    forward_rate = statistics.median(m["forward_wall_images_per_s"] for m in measured)
    return {
        **_summary(stages, first["images"], first["batch_size"], forward_rate),
        "runs": len(measured),
    }


def report(roof: dict[str, Any], end_to_end: float, share: float) -> str:
    """Two lines: the stages and the rate they allow; end to end, and `share`, the median of
    each run's share against the stages measured beside it."""
    ms = roof["cpu_ms_per_image"]
    runs = roof["runs"]
    return "\n".join(
        [
            f"roofline (CPU ms a photo, each stage alone, {roof['images']} photos"
            + (f", median of {runs} measurements" if runs > 1 else "")
            + "): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ms.items())
            + f"; sum {roof['total_cpu_ms_per_image']:.2f}",
            f"  {roof['cores']} cores allow {roof['allowed_images_per_s']:.1f} images/s; "
            f"end to end {end_to_end:.1f}: {share:.0%} (median of each run against the stages "
            "measured beside it) "
            f"(forward alone, wall: {roof['forward_wall_images_per_s']:.1f} images/s)",
        ]
    )
