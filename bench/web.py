"""The web app in headless Chromium: map load time and frame time at 10k and 100k points,
and the search page's time to results for one query.

A real server (SQLite in a temp folder) and `strata web` as a separate process, driven by
Debian's chromium through Selenium (WebGL through SwiftShader: no GPU, so frame times are
an upper bound for a laptop's browser).

- Map: synthetic items written straight into SQL through the library (bench/projection.py's
  `fill`: embedding-like vectors, 30 classes, 60% labelled), one depth. "load" is what the
  page itself measures from the start of its fetches (binary projection + compact labels)
  to the first WebGL frame. The server's one-off work after the bulk write is done over
  gRPC first and timed apart (FAISS index rebuilt from SQL, PCA computed and cached), so
  "first" is the browser's first load of a cached projection and "warm" the median of three
  reloads. "frame" is a continuous pan of 60 frames: `draw_ms` is draw + GPU sync (a
  1-pixel read), `interval_ms` the
  requestAnimationFrame interval (60 Hz cap); `pick_us` is one hover lookup.
- Search: 18 skimage photos embedded through AddImages; the query is an edited copy of one,
  chosen in the page's <input type=file>; time to results is from choosing the file to the
  last depth column drawn (median of 5, after one warm-up).

Examples (results go to bench/out/web.json; --json also prints them):
    python bench/web.py
    python bench/web.py --points 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from photos import colour_photos, distorted, grey_photos, jpeg, photo  # noqa: E402
from projection import fill, start  # noqa: E402  (bench/projection.py: synthetic items)
from web_browser import WebProcess, chromium  # noqa: E402

from service.client import ImageToAdd, StrataClient, StrataClientError  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402

OUT_DIR = ROOT / "bench" / "out"
#: Lite0 "semantics" (global pool) vectors: the collection's depth fixes the size.
DIM = 1280
FRAMES = 60  # panned frames, then as many synced draws


def wait_for(driver: Any, script: str, timeout: float = 600) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script(f"return {script}")
    )


def map_load(driver: Any, web: WebProcess, name: str, points: int) -> float:
    driver.get(web.url(f"/collections/{name}/map?depth=semantics"))
    wait_for(driver, f"document.getElementById('map').dataset.points === '{points}'")
    return float(driver.execute_script("return +document.getElementById('map').dataset.loadMs"))


def bench_map(
    driver: Any, web: WebProcess, running: Any, client: StrataClient, points: int, dim: int
) -> dict[str, Any]:
    name = f"web-map-{points}"
    client.create_collection(name, depths=["semantics"])
    try:
        fill(running, name, points, dim)
        # The server's one-off work after a bulk write, done over gRPC first so a page load
        # waits for neither: the FAISS index rebuilt from SQL, the PCA computed and cached.
        began = time.perf_counter()
        client.get_collection(name)
        index_s = time.perf_counter() - began
        projection = client.get_projection(name, depth="semantics")
        first_ms = map_load(driver, web, name, points)
        warm_ms = [map_load(driver, web, name, points) for _ in range(3)]
        # Started in the page and polled: a 100k run outlasts one WebDriver command.
        driver.execute_script(
            "window.benchResult = null;"
            f"window.strataMap.scatter.bench({FRAMES}).then(r => {{ window.benchResult = r; }});"
        )
        frames = wait_for(driver, "window.benchResult", 1200)
        pick_us = driver.execute_script(
            "const s = window.strataMap.scatter; const t = performance.now();"
            "for (let i = 0; i < 2000; i++) s.pick((i * 37) % s.width, (i * 53) % s.height);"
            "return (performance.now() - t) * 1000 / 2000;"
        )
        box_ms = driver.execute_script(
            "const s = window.strataMap.scatter; const t = performance.now();"
            "const n = s.inBox(0, 0, s.width / 2, s.height / 2).length;"
            "return performance.now() - t;"
        )
    finally:
        try:
            client.delete_collection(name)
        except StrataClientError as exc:  # a busy SQLite file: the temp folder goes anyway
            print(f"could not delete {name}: {exc}", file=sys.stderr)
    return {
        "points": points,
        "dim": dim,
        "server_index_rebuild_s": round(index_s, 1),
        "server_projection_s": round(projection.seconds, 2),
        "load_first_ms": round(first_ms, 1),
        "load_warm_ms": round(statistics.median(warm_ms), 1),
        "frame_draw_ms": {k: round(v, 2) for k, v in frames["draw_ms"].items()},
        "frame_interval_ms": {k: round(v, 2) for k, v in frames["interval_ms"].items()},
        "pick_us": round(float(pick_us), 1),
        "box_select_ms": round(float(box_ms), 1),
        "payload_bytes": points * 16,
    }


def bench_search(
    driver: Any, web: WebProcess, client: StrataClient, folder: Path
) -> dict[str, Any]:
    name = "web-search"
    client.create_collection(name)
    images = [ImageToAdd(f"skimage/{n}.jpg", jpeg(p)) for n, p in colour_photos().items()]
    images += [ImageToAdd(f"skimage/{n}.jpg", jpeg(p)) for n, p in grey_photos().items()]
    list(client.add_images(name, images))
    query = folder / "chelsea-edited.jpg"
    query.write_bytes(distorted(photo("chelsea")))
    wall, page = [], []
    for attempt in range(6):
        driver.get(web.url(f"/collections/{name}/search"))
        wait_for(driver, "document.readyState === 'complete'")
        began = time.perf_counter()
        driver.find_element("css selector", 'input[type="file"]').send_keys(str(query))
        wait_for(driver, "document.getElementById('results').dataset.state === 'done'")
        if attempt:  # the first query warms the server's engines
            wall.append((time.perf_counter() - began) * 1000)
            page.append(
                float(
                    driver.execute_script("return +document.getElementById('results').dataset.ms")
                )
            )
    first = driver.execute_script(
        "return [...document.querySelectorAll('#results [data-depth]')]"
        ".map(c => c.querySelector('[data-uri]').dataset.uri)"
    )
    client.delete_collection(name)
    return {
        "images": len(images),
        "depths": 3,
        "k": 12,
        "time_to_results_ms": round(statistics.median(wall), 1),
        "page_measured_ms": round(statistics.median(page), 1),
        "first_hit_per_depth": first,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="strata-bench-web-"))
    settings = ServiceSettings.load(
        env={}, data_dir=folder, database_url=f"sqlite:///{folder / 'strata.db'}", device="cpu"
    )
    running, loop = start(settings)
    driver = chromium(1400, 950)
    report: dict[str, Any] = {
        "load_average_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "browser": driver.capabilities.get("browserVersion"),
            "webgl": "swiftshader",
        },
    }
    try:
        with (
            StrataClient(f"127.0.0.1:{running.port}", timeout=3600) as client,
            WebProcess(f"127.0.0.1:{running.port}", log_dir=folder) as web,
        ):
            report["map"] = []
            for n in args.points:
                report["map"].append(bench_map(driver, web, running, client, n, DIM))
                print(json.dumps(report["map"][-1]), file=sys.stderr, flush=True)
            report["search"] = bench_search(driver, web, client, folder)
            print(json.dumps(report["search"]), file=sys.stderr, flush=True)
    finally:
        driver.quit()
        asyncio.run_coroutine_threadsafe(running.stop(1), loop).result(120)
        loop.call_soon_threadsafe(loop.stop)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "web.json").write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{'points':>8} {'load first ms':>14} {'load warm ms':>13} {'draw ms':>8} "
            f"{'rAF ms':>7} {'pick us':>8}"
        )
        for r in report["map"]:
            print(
                f"{r['points']:>8,} {r['load_first_ms']:>14.0f} {r['load_warm_ms']:>13.0f} "
                f"{r['frame_draw_ms']['mean']:>8.2f} {r['frame_interval_ms']['mean']:>7.2f} "
                f"{r['pick_us']:>8.1f}"
            )
        s = report["search"]
        print(
            f"search: {s['time_to_results_ms']:.0f} ms to results ({s['depths']} depths, "
            f"k={s['k']}, {s['images']} images)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
