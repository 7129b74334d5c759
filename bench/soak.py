"""Soak: mixed load against a `strata serve` process for minutes, watching for what only time
shows: errors under contention, memory or file descriptors that creep up, latency that drifts.

Load (each its own client connection): 2 AddImages streams of small real photos, 16
searchers (single-image queries, the dynamic batcher's path), a deleter, a label writer
(SetLabels) and a prober (Probe every 30 s once labels exist). Every 10 s it samples the
server's RSS and open file descriptors (/proc) and the searches' p50/p99 latency over the
window. Any error but those the load makes on purpose (searching a just-deleted id) counts
as unexpected; the run fails when there is one.

    python bench/soak.py --minutes 10                          # SQLite in a temp folder
    python bench/soak.py --minutes 10 --database postgresql+psycopg://postgres@127.0.0.1:5432/DB
Results go to bench/out/soak-<database>.json (--json also prints them).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.client import ImageToAdd, StrataClient, StrataClientError

OUT_DIR = Path(__file__).resolve().parent / "out"
COLLECTION = "soak"
SAMPLE_S = 10.0


def photos(seed: int) -> Iterator[tuple[str, bytes]]:
    """Endless distinct small JPEGs: random crops of scikit-image's photos."""
    from skimage import data as skdata

    sources = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    pictures = [Image.fromarray(np.asarray(a)).convert("RGB") for a in sources]
    rng = random.Random(seed)
    n = 0
    while True:
        picture = rng.choice(pictures)
        side = rng.randint(40, 96)
        left, top = rng.randint(0, picture.width - side), rng.randint(0, picture.height - side)
        buffer = io.BytesIO()
        picture.crop((left, top, left + side, top + side)).save(buffer, "JPEG", quality=90)
        yield f"soak/{seed}/{n:06d}.jpg", buffer.getvalue()
        n += 1


class Soak:
    def __init__(self, address: str, pid: int, seconds: float):
        self.address = address
        self.pid = pid
        self.until = time.monotonic() + seconds
        self.lock = threading.Lock()
        self.ids: list[int] = []
        self.deleted: set[int] = set()
        self.queries: list[bytes] = []
        self.latencies: list[float] = []
        self.counts: dict[str, int] = {}
        self.unexpected: list[str] = []
        self.samples: list[dict[str, Any]] = []

    def running(self) -> bool:
        return time.monotonic() < self.until

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] = self.counts.get(what, 0) + 1

    def error(self, where: str, exc: StrataClientError) -> None:
        with self.lock:
            self.unexpected.append(f"{where}: {exc.code}: {exc.details[:200]}")

    def ingest(self, seed: int) -> None:
        source = photos(seed)

        def images() -> Iterator[ImageToAdd]:
            while self.running():
                uri, data = next(source)
                with self.lock:
                    if len(self.queries) < 200:
                        self.queries.append(data)
                yield ImageToAdd(uri, data)

        with StrataClient(self.address, timeout=600) as client:
            while self.running():
                try:
                    for result in client.add_images(COLLECTION, images()):
                        if result.status == "failed":
                            self.unexpected.append(f"AddImages {result.uri}: {result.error}")
                            continue
                        with self.lock:
                            self.ids.append(result.id)
                        self.count("added")
                except StrataClientError as exc:
                    self.error("AddImages", exc)
                    time.sleep(1)

    def search(self, seed: int) -> None:
        rng = random.Random(seed)
        with StrataClient(self.address, timeout=60) as client:
            while self.running():
                with self.lock:
                    query = rng.choice(self.queries) if self.queries else None
                if query is None:
                    time.sleep(0.2)
                    continue
                began = time.perf_counter()
                try:
                    client.search(COLLECTION, [query], k=10)
                except StrataClientError as exc:
                    self.error("Search", exc)
                    continue
                with self.lock:
                    self.latencies.append(time.perf_counter() - began)
                self.count("searches")

    def delete(self) -> None:
        rng = random.Random(1)
        with StrataClient(self.address, timeout=60) as client:
            while self.running():
                time.sleep(2.0)
                with self.lock:
                    alive = [i for i in self.ids[-500:] if i not in self.deleted]
                    victim = rng.choice(alive) if len(alive) > 50 else None
                    if victim is not None:
                        self.deleted.add(victim)
                if victim is None:
                    continue
                try:
                    client.delete_items(COLLECTION, [victim])
                    self.count("deletes")
                except StrataClientError as exc:
                    self.error("DeleteItems", exc)

    def label(self) -> None:
        rng = random.Random(2)
        with StrataClient(self.address, timeout=60) as client:
            while self.running():
                time.sleep(1.0)
                with self.lock:
                    alive = [i for i in self.ids if i not in self.deleted]
                    chosen = rng.sample(alive, min(8, len(alive)))
                if not chosen:
                    continue
                try:
                    client.set_labels(COLLECTION, {i: [rng.choice("abc")] for i in chosen})
                    self.count("label writes")
                except StrataClientError as exc:
                    if exc.code != "NOT_FOUND":  # an id deleted meanwhile: on purpose
                        self.error("SetLabels", exc)

    def probe(self) -> None:
        with StrataClient(self.address, timeout=600) as client:
            while self.running():
                time.sleep(30.0)
                if not self.running():
                    break
                try:
                    client.probe(COLLECTION, depths=["semantics"], folds=2)
                    self.count("probes")
                except StrataClientError as exc:
                    if exc.code != "FAILED_PRECONDITION":  # too few labels yet
                        self.error("Probe", exc)

    def sample(self, began: float) -> None:
        while self.running():
            time.sleep(SAMPLE_S)
            status = Path(f"/proc/{self.pid}/status").read_text()
            rss = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS"))
            fds = len(os.listdir(f"/proc/{self.pid}/fd"))
            with self.lock:
                window, self.latencies = self.latencies, []
                counts = dict(self.counts)
                errors = len(self.unexpected)
            ms = sorted(x * 1000 for x in window)
            self.samples.append(
                {
                    "t_s": round(time.monotonic() - began),
                    "rss_mb": round(rss / 1024, 1),
                    "fds": fds,
                    "searches": len(ms),
                    "p50_ms": round(statistics.median(ms), 1) if ms else None,
                    "p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 1) if ms else None,
                    "counts": counts,
                    "unexpected": errors,
                }
            )
            print(json.dumps(self.samples[-1]), file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--database", default="", help="SQLAlchemy URL (default: SQLite)")
    parser.add_argument("--searchers", type=int, default=16)
    parser.add_argument("--port", type=int, default=50077)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    # A SIGTERM (timeout, CI) still stops the server in the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    data = Path(tempfile.mkdtemp(prefix="strata-soak-"))
    address = f"127.0.0.1:{args.port}"
    command = [sys.executable, "-m", "service.cli", "serve", "--listen", address]
    command += ["--data", str(data), "--device", "cpu"]
    if args.database:
        command += ["--database", args.database]
    log = open(data / "serve.log", "w")  # noqa: SIM115  (open for the server's lifetime)
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        with StrataClient(address, timeout=300) as client:
            deadline = time.monotonic() + 300
            while True:
                try:
                    client.create_collection(COLLECTION)
                    break
                except StrataClientError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
        soak = Soak(address, server.pid, args.minutes * 60)
        began = time.monotonic()
        threads = [threading.Thread(target=soak.ingest, args=(s,)) for s in (1, 2)]
        threads += [threading.Thread(target=soak.search, args=(s,)) for s in range(args.searchers)]
        threads += [threading.Thread(target=f) for f in (soak.delete, soak.label, soak.probe)]
        threads.append(threading.Thread(target=soak.sample, args=(began,)))
        for thread in threads:
            thread.daemon = True  # a call still waiting on a busy server must not hang the end
            thread.start()
        for thread in threads:
            thread.join(max(1.0, soak.until + 60 - time.monotonic()))
        with soak.lock:
            lingering = sum(t.is_alive() for t in threads)
        if lingering:
            print(f"{lingering} load thread(s) still in a call at the end", file=sys.stderr)
    finally:
        server.terminate()
        try:
            server.wait(120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(30)
    kind = "postgresql" if args.database.startswith("postgresql") else "sqlite"
    warm = [s for s in soak.samples if s["t_s"] >= 60] or soak.samples
    result = {
        "database": kind,
        "minutes": args.minutes,
        "searchers": args.searchers,
        "counts": soak.counts,
        "unexpected_errors": len(soak.unexpected),
        "first_unexpected": soak.unexpected[:5],
        "rss_mb_after_warmup": [warm[0]["rss_mb"], warm[-1]["rss_mb"]] if warm else None,
        "fds_after_warmup": [warm[0]["fds"], warm[-1]["fds"]] if warm else None,
        "p99_ms_per_window": [s["p99_ms"] for s in soak.samples],
        "samples": soak.samples,
        "server_exit": server.returncode,
    }
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / f"soak-{kind}.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return 0 if not soak.unexpected else 1


if __name__ == "__main__":
    raise SystemExit(main())
