"""Browse at scale: GetProjection (PCA, server-side, cached) and ListItems paging on
collections of 10,000 and 100,000 items, through a real server over gRPC.

Items are written straight into SQL (embedding 100k real photos would take hours on a
CPU): embedding-like 1,280-dim vectors of bench/search.py's Gaussian mixture (shaped like
EfficientNet-Lite0 "semantics" vectors), one depth; each item's mixture component is its
class, a label on 60% of the items (half human, half predicted with a confidence). What
is timed is what a client waits for:

- projection cold: the first GetProjection after a change (SQL read of every vector, PCA,
  cache write, the packed reply), and the server's own compute time (`Projection.seconds`);
- projection warm: the same call served from the cache;
- ListItems: the first page and a page deep into the listing (keyset paging), ordered by
  id and by -confidence, 100 items a page.

Examples (results go to bench/out/projection.json; --json also prints them):
    python bench/projection.py                      # 10k and 100k points
    python bench/projection.py --points 20000 --map bench/out/map-20k.png
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from search import Mixture  # noqa: E402  (bench/search.py: embedding-like vectors)

from indexer.store import repository  # noqa: E402
from service.client import StrataClient  # noqa: E402
from service.server import RunningServer, create_server  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402

OUT_DIR = ROOT / "bench" / "out"
#: Mixture components, each a class: more than a legend names (strata map shows 20).
CLASSES = 120
CHUNK = 5000


def start(settings: ServiceSettings) -> tuple[RunningServer, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True, name="bench-server").start()
    future = asyncio.run_coroutine_threadsafe(create_server(settings, "127.0.0.1:0"), loop)
    return future.result(300), loop


def fill(running: RunningServer, name: str, points: int, dim: int) -> None:
    """`points` items with vectors at depth "semantics" and labels, in chunks of CHUNK."""
    ctx = running.ctx
    data = Mixture(dim=dim, clusters=CLASSES)
    rng = np.random.default_rng(1)
    with ctx.sessions() as session:
        collection_id = repository.get_collection(session, name).id
    for number, start_at in enumerate(range(0, points, CHUNK)):
        count = min(CHUNK, points - start_at)
        vectors = data.draw(count, number)
        # The mixture component of each vector, drawn as Mixture.draw draws it first.
        clusters = np.random.default_rng([data.seed, 1, number]).choice(
            data.clusters, size=count, p=data.weights
        )
        new = []
        for i in range(count):
            kind = rng.random()
            label = f"class-{clusters[i]:03d}"
            labels: list[tuple[str, str, float]] = []
            if kind < 0.3:
                labels = [(label, "human", 1.0)]
            elif kind < 0.6:
                labels = [(label, "predicted", float(rng.uniform(0.2, 1.0)))]
            uri = f"synthetic/{start_at + i:07d}.jpg"
            new.append(repository.NewItem(uri, f"{start_at + i:064x}", 224, 224, labels))
        with ctx.sessions.begin() as session:
            ids = repository.insert_items(session, collection_id, new)
            repository.insert_vectors(
                session,
                [(item_id, "semantics", v) for item_id, v in zip(ids, vectors, strict=True)],
            )


def timed(call: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def page_times(client: StrataClient, name: str, order_by: str, points: int) -> dict[str, float]:
    first_s, page = timed(lambda: client.list_items(name, page_size=100, order_by=order_by))
    token = page.next_page_token
    # Walk to about the middle by pages of 1,000, then time one page of 100 there.
    for _ in range(max(0, points // 2000)):
        token = client.list_items(
            name, page_size=1000, page_token=token, order_by=order_by
        ).next_page_token
    # A token holds the last key, not a page number, so a 100-item page continues it.
    deep_s, _ = timed(
        lambda: client.list_items(name, page_size=100, page_token=token, order_by=order_by)
    )
    return {"first_page_ms": round(first_s * 1000, 1), "middle_page_ms": round(deep_s * 1000, 1)}


def run(points: int, dim: int, database: str, map_png: str) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="strata-bench-projection-"))
    url = database or f"sqlite:///{folder / 'strata.db'}"
    settings = ServiceSettings.load(env={}, data_dir=folder, database_url=url, device="cpu")
    running, loop = start(settings)
    name = f"projection-{points}"
    try:
        with StrataClient(f"127.0.0.1:{running.port}", timeout=3600) as client:
            client.create_collection(name, depths=["semantics"])
            fill_s, _ = timed(lambda: fill(running, name, points, dim))
            cold_s, cold = timed(lambda: client.get_projection(name))
            warm_s, warm = timed(lambda: client.get_projection(name))
            assert warm.cached and cold.count == points
            listing = {
                order: page_times(client, name, order, points) for order in ("id", "-confidence")
            }
            if map_png:
                from service.cli.maps import draw, item_labels

                labels = item_labels(client, name)
                ids = np.frombuffer(warm.ids, "<i8")
                xy = np.frombuffer(warm.xy, "<f4").reshape(-1, 2)
                draw(
                    xy,
                    [labels.get(int(i), "(no label)") for i in ids],
                    f"synthetic · semantics · PCA · {points:,} items",
                    Path(map_png),
                )
            client.delete_collection(name)
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(1), loop).result(120)
        loop.call_soon_threadsafe(loop.stop)
    return {
        "points": points,
        "dim": dim,
        "database": url.split(":")[0],
        "fill_s": round(fill_s, 1),
        "projection_compute_s": round(cold.seconds, 3),
        "projection_cold_call_s": round(cold_s, 3),
        "projection_warm_call_ms": round(warm_s * 1000, 1),
        "reply_bytes": len(warm.ids) + len(warm.xy),
        "list_items": listing,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--database", default="", help="SQLAlchemy URL (default: a temp SQLite)")
    parser.add_argument("--map", default="", help="also draw the largest map to this PNG")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    for n in args.points:
        png = args.map if n == max(args.points) else ""
        results.append(run(n, args.dim, args.database, png))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    report = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "projection.json").write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'points':>8} {'compute s':>10} {'cold call s':>12} {'warm ms':>8} {'page ms':>8}")
        for r in results:
            print(
                f"{r['points']:>8,} {r['projection_compute_s']:>10.2f} "
                f"{r['projection_cold_call_s']:>12.2f} {r['projection_warm_call_ms']:>8.1f} "
                f"{r['list_items']['-confidence']['middle_page_ms']:>8.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
