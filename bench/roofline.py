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
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _cpu(work: Callable[[], T]) -> tuple[T, float, float]:
    """Run `work`; its result, CPU seconds (all threads) and wall seconds."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return result, time.process_time() - cpu, time.perf_counter() - wall


def measure(
    paths: Sequence[Path],
    data_dir: Path,
    env: dict[str, str],
    depths: Sequence[str],
    framing: str = "center-crop",
) -> dict[str, Any]:
    """Per-image CPU seconds of each stage over `paths`, and the rate their sum allows."""
    import numpy as np

    from indexer.catalog.collections import create_collection
    from indexer.catalog.context import Context
    from indexer.catalog.ingest import ItemToWrite, write_items
    from indexer.core.settings import Settings
    from indexer.engine.extract import embed_prepared
    from indexer.imaging.prepare import PreparedImage, prepare_many

    settings = Settings.load(env={**env, "STRATA_DEVICE": "cpu"}, data_dir=data_dir)
    ctx = Context.open(settings)
    try:
        collection = create_collection(ctx, "roofline", depths=list(depths), framing=framing)
        backbone = ctx.backbones.get(collection.backbone)
        pre = backbone.spec.preprocessing.framed(collection.framing)
        layers = [d.layer for d in collection.depths]
        named = [(p.name, p.read_bytes()) for p in paths]
        n = len(named)

        # Decode runs one image per call, whichever thread: single-threaded here is its cost.
        prepared, decode_cpu, _ = _cpu(
            lambda: prepare_many(named, pre, settings.max_pixels, None, thumbnails=True)
        )
        images = [p for p in prepared if isinstance(p, PreparedImage)]
        if len(images) != n:
            raise SystemExit(f"roofline: {n - len(images)} photos failed to decode")

        def forward() -> Any:
            return embed_prepared(backbone, images, layers, collection.pooling, settings.batch_size)

        embed_prepared(
            backbone, images[: settings.batch_size], layers, collection.pooling, settings.batch_size
        )  # engine build and first-shape warm-up
        features, forward_cpu, forward_wall = _cpu(forward)

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
    finally:
        ctx.close()

    cores = os.cpu_count() or 1
    stages = {
        "decode_frame": decode_cpu / n,
        "forward": forward_cpu / n,
        "write": write_cpu / n,
    }
    total = sum(stages.values())
    return {
        "images": n,
        "cores": cores,
        "batch_size": settings.batch_size,
        "cpu_ms_per_image": {k: round(v * 1000, 2) for k, v in stages.items()},
        "total_cpu_ms_per_image": round(total * 1000, 2),
        "forward_wall_images_per_s": round(n / forward_wall, 1),
        "allowed_images_per_s": round(cores / total, 1),
    }


def report(roof: dict[str, Any], end_to_end: float) -> str:
    ms = roof["cpu_ms_per_image"]
    share = end_to_end / roof["allowed_images_per_s"]
    return "\n".join(
        [
            f"roofline (CPU ms a photo, each stage alone, {roof['images']} photos): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ms.items())
            + f"; sum {roof['total_cpu_ms_per_image']:.2f}",
            f"  {roof['cores']} cores allow {roof['allowed_images_per_s']:.1f} images/s; "
            f"end to end {end_to_end:.1f} = {share:.0%} of it "
            f"(forward alone, wall: {roof['forward_wall_images_per_s']:.1f} images/s)",
        ]
    )
