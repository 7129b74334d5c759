"""Start-up: seconds from `strata serve` to SERVING, and the first search against the
hundredth, cold (empty model cache: the graph is converted and compiled) and warm (cached),
with the warm-up on (the default) and off (`--no-warm-up`, the old behaviour) in one run.

    python bench/startup.py [--searches 100] [--connect-first] [--json]

A data folder holding one default collection of 16 photos is made once; each start is a
fresh `strata serve` subprocess on it. Each search is one photo sent as bytes (decode,
forward, FAISS), so the first one pays for whatever the start-up left undone, and for the
client's new channel (connection, HTTP/2 set-up). With --connect-first the client lists the
collections first (timed apart as connect_ms), so the first search shows only what the
server left undone. Results go to bench/out/startup.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import make_photos, strata_server  # noqa: E402


def one_start(
    data_dir: Path,
    cache_dir: Path,
    log: Path,
    warm_up: bool,
    photos: list[bytes],
    searches: int,
    connect_first: bool = False,
) -> dict[str, Any]:
    from service.client import StrataClient

    env = {"STRATA_DEVICE": "cpu", "STRATA_MODEL_CACHE_DIR": str(cache_dir)}
    extra = () if warm_up else ("--no-warm-up",)
    started = time.perf_counter()
    with strata_server(data_dir, env, log, extra) as server:
        serving_s = time.perf_counter() - started
        latencies = []
        connect_ms = None
        with StrataClient(server.address, timeout=600) as client:
            if connect_first:
                t = time.perf_counter()
                client.list_collections()
                connect_ms = round((time.perf_counter() - t) * 1000, 1)
            for i in range(searches):
                t = time.perf_counter()
                client.search("photos", [photos[i % len(photos)]], k=5)
                latencies.append(time.perf_counter() - t)
    rest = latencies[1:]
    return {
        "warm_up": warm_up,
        "serving_s": round(serving_s, 2),
        "first_search_ms": round(latencies[0] * 1000, 1),
        "median_later_ms": round(statistics.median(rest) * 1000, 1),
        "hundredth_ms": round(latencies[-1] * 1000, 1),
        "first_over_median": round(latencies[0] / statistics.median(rest), 2),
        "connect_ms": connect_ms,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--searches", type=int, default=100)
    parser.add_argument(
        "--connect-first",
        action="store_true",
        help="open the client's channel with a list of collections before the first search",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "startup.json")
    args = parser.parse_args()
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print

    from service.client import ImageToAdd, StrataClient

    photos = [data for _, data in make_photos(16, seed=5)]
    runs = []
    with tempfile.TemporaryDirectory(prefix="strata-startup-") as tmp:
        root = Path(tmp)
        data_dir, log = root / "data", root / "server.log"
        env = {"STRATA_DEVICE": "cpu", "STRATA_MODEL_CACHE_DIR": str(root / "setup-cache")}
        with strata_server(data_dir, env, log) as server, StrataClient(server.address) as c:
            c.create_collection("photos")
            images = [ImageToAdd(f"p{i}.jpg", data) for i, data in enumerate(photos)]
            list(c.add_images("photos", images))
        # (label, fresh cache?, warm-up?): cold first, then warm with and without warm-up.
        plan = [("cold", True, True), ("warm", False, True), ("cold", True, False)]
        plan += [("warm", False, False), ("warm", False, True)]
        for n, (cache, fresh, warm_up) in enumerate(plan):
            cache_dir = root / f"cache-{n}" if fresh else root / "setup-cache"
            run = one_start(
                data_dir, cache_dir, log, warm_up, photos, args.searches, args.connect_first
            )
            run["cache"] = cache
            runs.append(run)
            say(
                f"  {cache} cache, warm-up {'on ' if warm_up else 'off'}: SERVING after "
                f"{run['serving_s']:.2f} s; first search {run['first_search_ms']:.0f} ms, "
                f"median later {run['median_later_ms']:.0f} ms"
                + (f" (connected first: {run['connect_ms']:.0f} ms)" if args.connect_first else "")
            )
    result = {"benchmark": "startup", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
