"""Cost as a collection grows: ingest into a collection that already holds --items vectors
against ingest into an empty one on the same server, in one run; single-image search p50 at
each size; bytes per item on disk (SQL) and in the FAISS files, per depth.

    python bench/growth.py                          # 10k, 100k and 1M items
    python bench/growth.py --sizes 10000 50000      # a quick look

Preload, through the library in this process: one collection per size (Lite0 at edges,
parts and semantics), items written with indexer.store.repository in batches of 10,000,
vectors drawn like real Lite0 embeddings (bench/search.py's Mixture, one per depth), then
each depth's FAISS index built by the index manager from SQL (Flat up to its threshold,
IVF-fp16 above, nprobe calibrated), saved. Then `strata serve` on that data folder.

Ingest: `strata index` of --photos mixed-size JPEGs (500x375, 1024x768, 3000x2000) into the
largest collection and into a new empty one, alternated, --repeats times each; medians.
Search: one client, single-photo Search (decode, forward, FAISS, SQL for the hits) of
--queries photos against each size; and by vector at semantics (FAISS + SQL, no forward).
Results go to bench/out/growth.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import MIXED_SIZES, make_photos, run_index, strata_server, write_photos  # noqa: E402
from search import Mixture  # noqa: E402

DEPTHS = ("edges", "parts", "semantics")
BATCH = 10_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def preload(data_dir: Path, sizes: list[int]) -> dict[str, Any]:
    """One collection per size, filled through the library; seconds and bytes."""
    from indexer.catalog.collections import create_collection
    from indexer.catalog.context import Context
    from indexer.core.settings import Settings
    from indexer.store import repository

    ctx = Context.open(Settings.load(env={}, data_dir=data_dir, device="cpu"))
    made: dict[str, Any] = {}
    try:
        for size in sizes:
            name = f"size-{size}"
            info = create_collection(ctx, name, depths=list(DEPTHS), framing="center-crop")
            mixtures = {d.name: Mixture(dim=d.dim, seed=hash(d.name) % 1000) for d in info.depths}
            began = time.perf_counter()
            for number, start in enumerate(range(0, size, BATCH)):
                count = min(BATCH, size - start)
                vectors = {d: m.draw(count, number) for d, m in mixtures.items()}
                items = [
                    repository.NewItem(
                        f"synthetic/{start + i}.jpg", f"{size}-{start + i}", 500, 375
                    )
                    for i in range(count)
                ]
                with ctx.sessions.begin() as session:
                    ids = repository.insert_items(session, info.id, items)
                    repository.insert_vectors(
                        session,
                        [(item_id, d, vectors[d][row]) for row, item_id in enumerate(ids)
                         for d in DEPTHS],
                    )  # fmt: skip
                if number % 10 == 0:
                    log(f"  {name}: {start + count:,} items in SQL")
            sql_s = time.perf_counter() - began
            began = time.perf_counter()
            kinds = {}
            for depth in info.depths:  # built from SQL, as after a restart with no index file
                index = ctx.indexes.get(info.id, depth.name, depth.dim)
                kinds[depth.name] = index.kind
            ctx.indexes.save_dirty()
            files = {d.name: ctx.indexes.path_for(info.id, d.name) for d in info.depths}
            made[name] = {
                "items": size,
                "sql_write_s": round(sql_s, 1),
                "faiss_build_s": round(time.perf_counter() - began, 1),
                "index_types": kinds,
                "faiss_bytes_per_item": {d: round(_bytes(f) / size, 1) for d, f in files.items()},
            }
            log(f"  {name}: {made[name]}")
    finally:
        ctx.close()
    return made


def _bytes(index_file: Path) -> int:
    """The index file and the files saved beside it (its manifest)."""
    return sum(p.stat().st_size for p in index_file.parent.glob(index_file.name + "*"))


def strata_index(address: str, folder: Path, collection: str, create: bool) -> float:
    from service.client import StrataClient

    if create:
        with StrataClient(address) as client:
            client.create_collection(collection, depths=list(DEPTHS), framing="center-crop")
    document, seconds = run_index(address, folder, collection)
    return int(document["added"]) / seconds


def search_p50(
    address: str, collection: str, queries: list[Any], depths: tuple[str, ...] = ()
) -> dict[str, float]:
    from service.client import StrataClient

    with StrataClient(address, timeout=600) as client:
        client.search(collection, [queries[0]], k=10, depths=depths)  # warm: first touch
        times = []
        for query in queries:
            began = time.perf_counter()
            client.search(collection, [query], k=10, depths=depths)
            times.append(time.perf_counter() - began)
    return {
        "p50_ms": round(statistics.median(times) * 1000, 2),
        "p99_ms": round(float(np.percentile(times, 99)) * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--photos", type=int, default=96, help="photos per ingest run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--data", type=Path, default=None, help="keep the data folder here")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "growth.json")
    args = parser.parse_args()
    sizes = sorted(args.sizes)

    with tempfile.TemporaryDirectory(prefix="strata-growth-") as tmp:
        root = Path(tmp)
        data_dir = args.data or root / "data"
        log(f"preloading {', '.join(f'{s:,}' for s in sizes)} items through the library")
        made = preload(data_dir, sizes)
        sql_bytes = sum(
            p.stat().st_size for p in data_dir.iterdir() if p.name.startswith("strata.db")
        )
        total_items = sum(sizes)
        photos = root / "photos"
        write_photos(photos, args.photos, seed=7, sizes=MIXED_SIZES)
        queries = [data for _, data in make_photos(args.queries, seed=8)]
        vector_queries = [
            [float(x) for x in v] for v in Mixture(dim=1280, seed=1).draw(args.queries, 99)
        ]
        env = {"STRATA_DEVICE": "cpu"}
        began = time.perf_counter()
        with strata_server(data_dir, env, root / "server.log") as server:
            start_s = time.perf_counter() - began
            log(f"server SERVING after {start_s:.1f} s")
            big = f"size-{sizes[-1]}"
            rates: dict[str, list[float]] = {"empty": [], "full": []}
            # The largest size once before any ingest: the ingest into it dirties its
            # indexes (a periodic save follows) and may start a rebuild.
            before = search_p50(server.address, big, vector_queries, ("semantics",))
            log(f"  search {big} by vector before the ingest runs: {before}")
            strata_index(server.address, photos, "warm-up", create=True)
            for repeat in range(args.repeats):
                order = ("empty", "full") if repeat % 2 == 0 else ("full", "empty")
                for kind in order:
                    if kind == "empty":
                        rate = strata_index(server.address, photos, f"empty-{repeat}", True)
                    else:
                        # New photos each time: the same files again would be "unchanged".
                        folder = root / f"photos-{repeat}"
                        write_photos(folder, args.photos, seed=20 + repeat, sizes=MIXED_SIZES)
                        rate = strata_index(server.address, folder, big, create=False)
                    rates[kind].append(rate)
                    log(f"  ingest into {kind} collection: {rate:.1f} images/s")
            searches = {}
            for size in sizes:
                name = f"size-{size}"
                searches[name] = {
                    "photo": search_p50(server.address, name, queries),
                    "vector": search_p50(server.address, name, vector_queries, ("semantics",)),
                }
                log(f"  search {name}: {searches[name]}")
            rss_kb = int(
                next(
                    line.split()[1]
                    for line in Path(f"/proc/{server.pid}/status").read_text().splitlines()
                    if line.startswith("VmRSS")
                )
            )
        # The server's log beside the JSON: saves, rebuilds and their durations.
        args.out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "server.log", args.out.with_suffix(".server.log"))
    empty, full = statistics.median(rates["empty"]), statistics.median(rates["full"])
    result = {
        "benchmark": "growth",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cores": os.cpu_count(),
        "preload": made,
        "server_start_s": round(start_s, 1),
        "server_rss_gb": round(rss_kb / 1e6, 2),
        "ingest_images_per_s": {"empty": round(empty, 2), "full": round(full, 2)},
        "ingest_runs": rates,
        "full_over_empty": round(full / empty, 3),
        "search": searches,
        "search_before_ingest": {"size": big, "vector": before},
        "sql_bytes_per_item": round(sql_bytes / total_items, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
