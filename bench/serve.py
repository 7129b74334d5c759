"""Serving: concurrent single-image searches over gRPC, dynamically batched, side by side with
the same server without batching and with a bare forward pass + FAISS search, in one run.

    python bench/serve.py                          # 1, 8, 32 and 128 clients, 20 s each
    python bench/serve.py --seconds 10 --clients 1 8 --json

Photos: --items JPEGs of typical ImageNet size (500x375 or 375x500, quality 90): random
crops, mirrors and exposure changes of scikit-image's colour photos. Queries are other
crops of the same photos (near neighbours exist, as in real use). `--sizes
500x375,1024x768,3000x2000` makes every photo of the run (collection, queries, ingest) a
mix of those sizes in turn, as bench/ingest.py's photos.

Index: an efficientnet_lite0 collection (edges, parts, semantics) filled through the library
(indexer.ingest) in this process, saved, then served by `strata serve` subprocesses on free
ports over the same data folder: one with the dynamic batcher (the default settings), one
with batches of one (--no-unbatched skips it). Clients are grpc.aio coroutines in a child
process, one channel each, sending single-image Search requests (k=10, every depth) back to
back.

Ingest, same server: `strata index` of --ingest-images photos like the queries, alone (before
and after) and while 32 search clients run; searches/s at 32 clients over ingest images/s is
the issue's ratio. Each level and ingest run also reports the server's CPU (/proc, all
threads) and the client's per request or image: on a machine whose cores are all busy, the
ratio of the rates is the inverse ratio of those costs.

Bare: in this process, with the same settings and code, one image already decoded: one
forward pass tapping the three depths, then FAISS search at each depth, no gRPC, no
batcher, no SQL. Also timed: decoding included, and the whole library call (search.search:
decode, forward, FAISS, SQL lookups of the hits). The service's overhead for one request is
its single-client p50 over the bare p50. Bare runs are interleaved with the server runs so
load from other processes falls on both. Results go to bench/out/serve.json.

Inside the server: its Prometheus metrics (`--metrics-listen`), scraped around the
single-client level, split the client's mean wait into gRPC outside the server's handling,
the server around the library's stages, and each stage (decode, forward, FAISS, the hits'
SQL); and give the wait over the same requests' own decode + forward + FAISS, timed at the
same moment as the wait (the bare timings are spread over the run, whose speed drifts).
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from common import (  # noqa: E402
    PHOTO_SIZE,
    Server,
    free_port,
    make_photos,
    parse_sizes,
    run_index,
    strata_server,
    write_photos,
)

OUT_DIR = ROOT / "bench" / "out"
COLLECTION = "serve-bench"
K = 10


def load_test(
    server: Server, queries: list[bytes], clients: int, seconds: float, metrics: str | None = None
) -> dict:
    """`clients` concurrent clients, one channel each, single-image searches back to back,
    from a child process (`_load_process`) so the generator's CPU is not this process's.
    With the server's CPU per request: what a search costs it, against an ingested image;
    and, given the server's metrics address, where a search's time went inside the server."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # no forked gRPC state
    with context.Pool(1) as pool:
        before = server.cpu_seconds()
        scraped = scrape_metrics(metrics) if metrics else None
        level = dict(pool.apply(_load_process, (server.address, queries, clients, seconds)))
        spent = server.cpu_seconds() - before  # includes the clients' one warm-up call each
        if scraped is not None and metrics:
            level["server_mean_ms"] = server_means(scraped, scrape_metrics(metrics))
    level["server_cpu_ms_per_request"] = round(spent * 1000 / (level["requests"] + clients), 2)
    return level


#: The library's stages a search goes through (indexer/core/metrics.py, strata_stage_seconds).
SEARCH_STAGES = ("decode", "forward", "index_search", "hit_details")


def scrape_metrics(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The server's Prometheus samples: (name, sorted labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def server_means(before: dict, after: dict) -> dict[str, float]:
    """Mean ms a call between two scrapes: the Search RPC as the server timed it (from its
    outermost interceptor to the reply), and each library stage a search went through."""

    def mean_ms(name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        count = after.get((f"{name}_count", key), 0.0) - before.get((f"{name}_count", key), 0.0)
        total = after.get((f"{name}_sum", key), 0.0) - before.get((f"{name}_sum", key), 0.0)
        return round(total * 1000 / count, 3) if count else 0.0

    means = {
        "rpc": mean_ms("strata_rpc_latency_seconds", method="/strata.v1.Strata/Search", code="OK")
    }
    for stage in SEARCH_STAGES:
        means[stage] = mean_ms("strata_stage_seconds", stage=stage)
    return means


def _load_process(address: str, queries: list[bytes], clients: int, seconds: float) -> dict:
    return asyncio.run(_load(address, queries, clients, seconds))


async def _load(address: str, queries: list[bytes], clients: int, seconds: float) -> dict:
    """grpc.aio clients on one event loop: a Python thread per client would spend more CPU
    on the GIL than on the requests, and that CPU is the server's too on a small machine."""
    import grpc

    from service.generated.strata.v1 import strata_pb2 as pb
    from service.generated.strata.v1 import strata_pb2_grpc as pb_grpc

    requests = [
        pb.SearchRequest(collection=COLLECTION, queries=[pb.Query(name=f"q{i}", image=q)], k=K)
        for i, q in enumerate(queries)
    ]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[str] = []
    channels = [grpc.aio.insecure_channel(address) for _ in range(clients)]
    stubs = [pb_grpc.StrataStub(channel) for channel in channels]
    await asyncio.gather(*(stub.Search(requests[0], timeout=600) for stub in stubs))  # warm
    stop_at = time.perf_counter() + seconds

    async def client(number: int) -> None:
        n = number
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            try:
                await stubs[number].Search(requests[n % len(requests)], timeout=600)
            except grpc.aio.AioRpcError as exc:  # report, keep measuring the rest
                errors.append(f"{exc.code().name}: {exc.details()}")
            latencies[number].append(time.perf_counter() - began)
            n += clients

    began, cpu_began = time.perf_counter(), time.process_time()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed, client_cpu = time.perf_counter() - began, time.process_time() - cpu_began
    for channel in channels:
        await channel.close()
    flat = np.array([x for per in latencies for x in per]) * 1000
    return {
        "clients": clients,
        "requests": len(flat),
        "requests_per_s": round(len(flat) / elapsed, 2),
        "mean_ms": round(float(flat.mean()), 2),
        "p50_ms": round(float(np.percentile(flat, 50)), 2),
        "p99_ms": round(float(np.percentile(flat, 99)), 2),
        "p99_over_p50": round(float(np.percentile(flat, 99) / np.percentile(flat, 50)), 2),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "client_cpu_ms_per_request": round(client_cpu * 1000 / max(1, len(flat)), 2),
    }


def ingest_rate(server: Server, folder: Path, collection: str) -> dict:
    """`strata index` of `folder` into a new collection of this server: images/s, and the
    server's and the client's CPU per image."""
    from service.client import StrataClient

    with StrataClient(server.address) as client:
        client.create_collection(collection, framing="center-crop")
    server_began, client_began = server.cpu_seconds(), time.process_time()
    document, seconds = run_index(server.address, folder, collection)
    server_spent = server.cpu_seconds() - server_began
    client_spent = time.process_time() - client_began  # strata index runs in this process
    added = int(document["added"])
    return {
        "images": added,
        "seconds": round(seconds, 2),
        "images_per_s": round(added / seconds, 2),
        "server_cpu_ms_per_image": round(server_spent * 1000 / max(1, added), 2),
        "client_cpu_ms_per_image": round(client_spent * 1000 / max(1, added), 2),
    }


# -- the bare path, in this process -----------------------------------------------------------


class Bare:
    """The library's parts called directly: decode, forward pass, FAISS, (SQL).

    Every timing runs on a thread of the context's decode pool (PyTorch's framing kernels
    on that thread alone, as in the server). On the bench's main thread, framing would start
    an OpenMP team whose second thread keeps spinning after the work is done, taking a core
    from the forward pass that follows: 11.8 ms against 4.7 for decode + forward + FAISS
    of one photo (2026-12-07, AMD EPYC with AVX-512), a baseline the server beats."""

    def __init__(self, ctx: Any):
        from indexer.catalog.collections import get_collection

        self._thread = ctx.decode_pool
        self.ctx = ctx
        self.collection = get_collection(ctx, COLLECTION)
        self.backbone = ctx.backbones.get(self.collection.backbone)
        self.layers = [d.layer for d in self.collection.depths]
        self.indexes = [
            (d.layer, ctx.indexes.get(self.collection.id, d.name, d.dim))
            for d in self.collection.depths
        ]

    def prepare(self, image: bytes) -> Any:
        from indexer.imaging.prepare import prepare_one

        pre = self.backbone.spec.preprocessing
        return prepare_one("query", image, pre, self.ctx.settings.max_pixels)

    def forward_and_search(self, prepared: list[Any]) -> None:
        from indexer.engine.extract import embed_prepared

        features = embed_prepared(
            self.backbone, prepared, self.layers, self.collection.pooling, len(prepared)
        )
        for layer, index in self.indexes:
            index.search(features.vectors[layer], K)

    def timed(self, queries: list[bytes], repeats: int) -> dict:
        return self._thread.submit(self._timed, queries, repeats).result()

    def _timed(self, queries: list[bytes], repeats: int) -> dict:
        from indexer.catalog import search

        prepared = [self.prepare(q) for q in queries]
        self.forward_and_search(prepared[:1])  # warm up
        bare, decode, library = [], [], []
        for i in range(repeats):
            image = queries[i % len(queries)]
            began = time.perf_counter()
            self.forward_and_search([prepared[i % len(prepared)]])
            bare.append(time.perf_counter() - began)
            began = time.perf_counter()
            self.forward_and_search([self.prepare(image)])
            decode.append(time.perf_counter() - began)
            began = time.perf_counter()
            search.search(self.ctx, COLLECTION, [search.Query("q", image=image)], k=K)
            library.append(time.perf_counter() - began)
        return {"forward_faiss": bare, "decode_forward_faiss": decode, "library_search": library}

    def batched_ceiling(self, queries: list[bytes], batch: int, repeats: int) -> float:
        """Images/s of forward + FAISS in batches of `batch`, decoding included: the most
        the service could do with perfect batching."""
        return self._thread.submit(self._batched_ceiling, queries, batch, repeats).result()

    def _batched_ceiling(self, queries: list[bytes], batch: int, repeats: int) -> float:
        began = time.perf_counter()
        for _ in range(repeats):
            self.forward_and_search([self.prepare(queries[i % len(queries)]) for i in range(batch)])
        return batch * repeats / (time.perf_counter() - began)


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


# -- main ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    import torch

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ingest_side_by_side(
    server: Server, folder: Path, queries: list[bytes], seconds: float
) -> dict[str, Any]:
    """The same server's ingest rate on photos like the queries; then 32 search clients while
    an ingest stream of the same photos runs (neither may starve); then ingest alone again."""
    import concurrent.futures

    before = ingest_rate(server, folder, "ingest-alone-1")
    log(f"  ingest alone: {before}")
    searching = [True]

    def ingest_while_searching() -> dict[str, Any]:
        runs: list[dict[str, Any]] = []  # whole folders, one collection each, until the end
        while searching[0]:
            runs.append(ingest_rate(server, folder, f"ingest-with-queries-{len(runs)}"))
        images, spent = sum(r["images"] for r in runs), sum(r["seconds"] for r in runs)
        return {
            "images": images,
            "seconds": round(spent, 2),
            "images_per_s": round(images / spent, 2),
        }

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.perf_counter()
        running = pool.submit(ingest_while_searching)
        searches = load_test(server, queries, 32, seconds)
        search_s = time.perf_counter() - started
        searching[0] = False
        during = running.result()
    log(f"  32 clients during ingest: {searches}; ingest meanwhile: {during}")
    after = ingest_rate(server, folder, "ingest-alone-2")
    log(f"  ingest alone again: {after}")
    return {
        "alone": [before, after],
        "alone_images_per_s": round((before["images_per_s"] + after["images_per_s"]) / 2, 2),
        "with_32_search_clients": {
            "searches": searches,
            "ingest": during,
            "overlap_s": round(min(search_s, during["seconds"]), 2),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200, help="photos in the collection")
    parser.add_argument("--queries", type=int, default=16, help="distinct query photos")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument(
        "--ingest-images", type=int, default=480, help="photos for the ingest-rate runs"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="per load level")
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=(PHOTO_SIZE,),
        help="photo sizes taken in turn, e.g. 500x375,1024x768,3000x2000 (default 500x375)",
    )
    parser.add_argument("--bare-repeats", type=int, default=30)
    parser.add_argument("--batch-max", type=int, default=None, help="STRATA_SEARCH_BATCH_MAX")
    parser.add_argument(
        "--batch-concurrency", type=int, default=None, help="STRATA_SEARCH_BATCH_CONCURRENCY"
    )
    parser.add_argument("--wait-ms", type=float, default=None, help="STRATA_SEARCH_BATCH_WAIT_S")
    parser.add_argument("--no-unbatched", action="store_true", help="skip the batch-of-one run")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "serve.json")
    parser.add_argument("--json", action="store_true", help="print the JSON result to stdout")
    args = parser.parse_args()

    from indexer.catalog import ingest
    from indexer.catalog.context import Context
    from indexer.core.settings import Settings

    result: dict[str, Any] = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    batched_env: dict[str, str] = {}
    if args.batch_max is not None:
        batched_env["STRATA_SEARCH_BATCH_MAX"] = str(args.batch_max)
    if args.batch_concurrency is not None:
        batched_env["STRATA_SEARCH_BATCH_CONCURRENCY"] = str(args.batch_concurrency)
    if args.wait_ms is not None:
        batched_env["STRATA_SEARCH_BATCH_WAIT_S"] = str(args.wait_ms / 1000)
    # 128 clients in flight at once: above the default admission limit (64, service/limits.py),
    # which would refuse half of them; the load test measures queueing, not refusals.
    batched_env["STRATA_MAX_CONCURRENT_REQUESTS"] = str(max(64, 2 * max(args.clients)))
    runs = {"batched": batched_env}
    if not args.no_unbatched:
        runs["unbatched"] = {**batched_env, "STRATA_SEARCH_BATCH_MAX": "1"}

    with tempfile.TemporaryDirectory(prefix="strata-serve-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        settings = Settings.load(env={}, data_dir=data_dir, device="cpu")
        ctx = Context.open(settings)
        try:
            log(f"indexing {args.items} photos through the library")
            from indexer.catalog.collections import create_collection

            create_collection(
                ctx, COLLECTION, "efficientnet_lite0", ["edges", "parts", "semantics"], "avg"
            )
            photos = make_photos(args.items, seed=1, sizes=args.sizes)
            inputs = [ingest.ImageInput(uri, data, (), {}) for uri, data in photos]
            for start in range(0, len(inputs), 32):
                ingest.add_images(ctx, COLLECTION, inputs[start : start + 32])
            ctx.indexes.save_dirty()
            queries = [data for _, data in make_photos(args.queries, seed=2, sizes=args.sizes)]
            ingest_folder = Path(tmp) / "ingest-photos"
            write_photos(ingest_folder, args.ingest_images, seed=3, sizes=args.sizes)
            bare = Bare(ctx)

            samples: dict[str, list[float]] = {}

            def time_bare() -> None:
                for name, values in bare.timed(queries, args.bare_repeats).items():
                    samples.setdefault(name, []).extend(values)

            time_bare()
            result["runs"] = {}
            for name, env in runs.items():
                log(f"server ({name}, env {env or 'defaults'})")
                log_path = Path(tmp) / f"serve-{name}.log"
                metrics = f"127.0.0.1:{free_port()}"
                extra = ("--device", "cpu", "--metrics-listen", metrics)
                with strata_server(data_dir, env, log_path, extra) as server:
                    levels = []
                    for clients in args.clients:
                        level = load_test(
                            server,
                            queries,
                            clients,
                            args.seconds,
                            metrics if clients == 1 else None,
                        )
                        log(f"  {clients:>3} clients: {level}")
                        levels.append(level)
                        time_bare()  # interleaved, so both sides see the same load
                    if name == "batched":
                        result["ingest"] = ingest_side_by_side(
                            server, ingest_folder, queries, args.seconds
                        )
                result["runs"][name] = levels
            ceiling = bare.batched_ceiling(queries, 32, 3)
        finally:
            ctx.close()

    bare_ms = {name: median_ms(values) for name, values in samples.items()}
    single = result["runs"]["batched"][0] if args.clients and args.clients[0] == 1 else None
    result["bare_ms"] = bare_ms
    result["bare_samples"] = {name: len(values) for name, values in samples.items()}
    result["batched_ceiling_images_per_s"] = round(ceiling, 1)
    if single is not None:
        result["single_request"] = {
            "grpc_p50_ms": single["p50_ms"],
            "overhead_vs_forward_faiss": round(single["p50_ms"] / bare_ms["forward_faiss"] - 1, 3),
            "overhead_vs_decode_forward_faiss": round(
                single["p50_ms"] / bare_ms["decode_forward_faiss"] - 1, 3
            ),
            "overhead_vs_library_search": round(
                single["p50_ms"] / bare_ms["library_search"] - 1, 3
            ),
        }
        if "server_mean_ms" in single:
            # Means, not medians (the server's histograms give sums): the client's wait split
            # into gRPC outside the server's handler (transport, (de)serialisation, the
            # client), the server around the library's stages, and the stages themselves.
            inside = single["server_mean_ms"]
            stages = sum(inside[stage] for stage in SEARCH_STAGES)
            result["single_request"]["mean_ms_split"] = {
                "client_wait": single["mean_ms"],
                "outside_the_server_rpc": round(single["mean_ms"] - inside["rpc"], 3),
                "server_rpc_around_the_stages": round(inside["rpc"] - stages, 3),
                **{stage: inside[stage] for stage in SEARCH_STAGES},
            }
            # The bare timings are spread over the whole run, whose speed drifts; the same
            # requests' own decode + forward + FAISS are timed at the same moment.
            own = inside["decode"] + inside["forward"] + inside["index_search"]
            result["single_request"]["overhead_vs_own_decode_forward_faiss"] = round(
                single["mean_ms"] / own - 1, 3
            )
    if "ingest" in result:
        by_clients = {level["clients"]: level for level in result["runs"]["batched"]}
        if 32 in by_clients:
            result["search_32_over_ingest"] = round(
                by_clients[32]["requests_per_s"] / result["ingest"]["alone_images_per_s"], 2
            )
            # On a CPU-bound machine each rate is the cores over the CPU a unit costs (server
            # and client): 1.2x needs a search to cost at most 1/1.2 of an ingested image.
            alone = result["ingest"]["alone"]
            result["cpu_ms_search_32_vs_ingest_image"] = {
                "search": round(
                    by_clients[32]["server_cpu_ms_per_request"]
                    + by_clients[32]["client_cpu_ms_per_request"],
                    2,
                ),
                "ingest": round(
                    statistics.mean(
                        r["server_cpu_ms_per_image"] + r["client_cpu_ms_per_image"] for r in alone
                    ),
                    2,
                ),
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    summarise(result)
    if args.json:
        print(json.dumps(result, indent=2))
    log(f"written to {args.out}")
    return 0


def summarise(result: dict[str, Any]) -> None:
    log("")
    log("| server | clients | requests/s | p50 | p99 |")
    log("|---|---|---|---|---|")
    for name, levels in result["runs"].items():
        for level in levels:
            log(
                f"| {name} | {level['clients']} | {level['requests_per_s']} | "
                f"{level['p50_ms']} ms | {level['p99_ms']} ms |"
            )
    if "ingest" in result:
        ingest = result["ingest"]
        mixed = ingest["with_32_search_clients"]
        log(
            f"\ningest alone: {ingest['alone_images_per_s']} images/s; 32 search clients / "
            f"ingest: {result.get('search_32_over_ingest')}x; together: searches "
            f"{mixed['searches']['requests_per_s']}/s (p50 {mixed['searches']['p50_ms']} ms, "
            f"p99 {mixed['searches']['p99_ms']} ms), ingest {mixed['ingest']['images_per_s']}/s"
        )
    if "cpu_ms_search_32_vs_ingest_image" in result:
        log(
            f"CPU ms (server + client), a search at 32 clients / an ingested image: "
            f"{result['cpu_ms_search_32_vs_ingest_image']}"
        )
    log(f"\nbare (median ms): {result['bare_ms']}")
    ceiling = result["batched_ceiling_images_per_s"]
    log(f"forward+FAISS in batches of 32, decode included: {ceiling} images/s")
    if "single_request" in result:
        log(f"one request: {result['single_request']}")


if __name__ == "__main__":
    raise SystemExit(main())
