"""Search at scale: a million 1,280-dim vectors through the service's own VectorIndex and
IndexPolicy, against the exact Flat baseline in the same run.

The approximate side grows as a collection does: vectors are added in chunks to one
VectorIndex, which starts exact (Flat), turns into IVF with fp16 codes past the threshold
and retrains in a background thread each time it doubles (the service's code path), while
a prober thread times single-query searches. A chunk waits for a running rebuild, as any
real ingest is slower than training (`--overlap` races them: the journal of writes to
replay then grows, and memory with it). `--build bulk` builds the index in one go from the
source instead, as a rebuild from SQL does. The baseline is a Flat VectorIndex over the
same vectors; its answers are the ground truth for recall@10.

Data: a Gaussian mixture shaped like EfficientNet-Lite0 "semantics" embeddings (global
average pool after ReLU6: non-negative, about half zeros, unit length). 1,000 clusters of
Zipf-like sizes in a 64-dim latent space, mapped to 1,280 dims, plus a bias and noise,
then ReLU and L2 normalisation. Its statistics on 1,000 samples against 1,000 real
CIFAR-10 test photos embedded with Lite0 (real / synthetic): mean cosine of random pairs
0.47 / 0.43, to the 1st neighbour 0.72 / 0.75, to the 10th 0.65 / 0.64, to the 100th
0.57 / 0.55; zeros 42% / 46%; principal components holding 90% of the variance 287 / 290.
Queries are fresh draws, never stored vectors.

Examples (results go to bench/out/search.json; --json also prints them):
    python bench/search.py                                  # the issue's figures (1M)
    python bench/search.py --vectors 200000 --queries 300   # a quick look
    python bench/search.py --build bulk --threads 2 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from indexer.store.faiss_device import device_copier
from indexer.store.index_policy import IndexPolicy, build_index
from indexer.store.vector_index import VectorIndex

OUT_DIR = Path(__file__).resolve().parent / "out"
K = 10


class Mixture:
    """Seeded generator of embedding-like unit vectors; chunk `i` is the same every run."""

    def __init__(
        self,
        dim: int = 1280,
        seed: int = 0,
        clusters: int = 1000,
        latent: int = 64,
        within: float = 0.7,  # spread inside a cluster, relative to the spread of clusters
        noise: float = 0.5,  # isotropic noise in the full space
        bias_mean: float = 0.15,  # CNN features share a mean direction
    ):
        self.dim, self.seed, self.clusters = dim, seed, clusters
        self.within, self.noise = within, noise
        rng = np.random.default_rng([seed, 0])
        scales = 1.0 / np.sqrt(1.0 + np.arange(latent))  # a decaying spectrum
        self.scales = scales.astype(np.float32)
        lift = rng.standard_normal((latent, dim)) / np.sqrt((scales**2).sum())
        self.lift = lift.astype(np.float32)
        self.centres = (rng.standard_normal((clusters, latent)) * scales).astype(np.float32)
        weights = np.minimum(rng.zipf(1.5, clusters), 100).astype(np.float64)
        self.weights = weights / weights.sum()
        self.bias = (rng.standard_normal(dim) * 0.5 + bias_mean).astype(np.float32)

    def draw(self, count: int, stream: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1, stream])
        labels = rng.choice(self.clusters, size=count, p=self.weights)
        spread = rng.standard_normal((count, len(self.scales)), dtype=np.float32)
        latent = self.centres[labels] + self.within * spread * self.scales
        x = latent @ self.lift + self.bias
        x += self.noise * rng.standard_normal(x.shape, dtype=np.float32)
        np.maximum(x, 0.0, out=x)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def chunks(self, total: int, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) for ids 1..total, in chunks; ids start at 1 like SQL item ids."""
        for number, start in enumerate(range(0, total, size)):
            count = min(size, total - start)
            yield np.arange(start + 1, start + count + 1, dtype=np.int64), self.draw(count, number)

    def queries(self, count: int) -> np.ndarray:
        return self.draw(count, 10**6)  # a stream no stored chunk uses


def peak_rss_gb() -> float:
    """This process's own peak (VmHWM; getrusage's ru_maxrss keeps a parent's peak across exec)."""
    return _status_kib("VmHWM:") / 1024**2


def rss_gb() -> float:
    return _status_kib("VmRSS:") / 1024**2


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
        "count": len(ms),
    }


def single_query_latency(index: VectorIndex, queries: np.ndarray, threads: int) -> dict:
    """One query at a time, FAISS on `threads` threads (the service uses the policy's
    single_query_threads, 1 by default)."""
    policy = index.policy
    index.policy = dataclasses.replace(policy, single_query_threads=threads)
    index.search(queries[:3], K)  # warm up
    seconds = []
    for query in queries:
        began = time.perf_counter()
        index.search(query[None, :], K)
        seconds.append(time.perf_counter() - began)
    index.policy = policy
    return {"threads": threads, **percentiles(seconds)}


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f[f >= 0]) & set(t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


class Prober:
    """Single-query searches every `period` seconds while the index is being built, to show
    how long searches wait for the rebuilds (they should not, beyond sharing the CPU)."""

    def __init__(self, index: VectorIndex, queries: np.ndarray, period: float = 0.05):
        self.index, self.queries, self.period = index, queries, period
        self.seconds: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.period):
            if self.index.ntotal == 0:
                continue
            began = time.perf_counter()
            self.index.search(self.queries[n % len(self.queries)][None, :], K)
            self.seconds.append(time.perf_counter() - began)
            n += 1


def build_ann(
    args: argparse.Namespace, data: Mixture, probes: np.ndarray
) -> tuple[VectorIndex, dict]:
    policy = IndexPolicy(flat_max_vectors=args.threshold, background=True)
    began = time.perf_counter()
    if args.build == "bulk":
        built = build_index(
            data.dim, lambda: data.chunks(args.vectors, args.chunk), args.vectors, policy
        )
        index = VectorIndex.from_built(
            data.dim, built, policy, to_device=device_copier(args.device)
        )
        index.history.append(built.report)
        during: dict = {}
    else:
        index = VectorIndex(data.dim, policy=policy, to_device=device_copier(args.device))
        with Prober(index, probes) as prober:
            for ids, vectors in data.chunks(args.vectors, args.chunk):
                if not args.overlap:
                    index.wait_for_rebuild()  # an ingest slower than training, see --overlap
                index.add(ids, vectors)
                log(f"  added {index.ntotal:>9,} ({index.kind}, rss {rss_gb():.1f} GB)")
            while True:  # let the last rebuilds finish (writes may have outrun one)
                index.wait_for_rebuild()
                if not index.needs_rebuild():
                    break
                index.maybe_rebuild()
        during = percentiles(prober.seconds) if prober.seconds else {}
    seconds = time.perf_counter() - began
    info = {
        "mode": args.build,
        "seconds": round(seconds, 1),
        "rebuilds": [asdict(r) for r in index.history],
        "searches_during_build": during,
    }
    return index, info


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
        "faiss_simd": faiss.get_compile_options(),
        "load_average_at_start": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries for recall")
    parser.add_argument("--latency-queries", type=int, default=500, help="single queries timed")
    parser.add_argument("--flat-latency-queries", type=int, default=30)
    parser.add_argument("--threshold", type=int, default=IndexPolicy().flat_max_vectors)
    parser.add_argument("--chunk", type=int, default=50_000, help="vectors per add")
    parser.add_argument("--build", choices=("incremental", "bulk"), default="incremental")
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="keep adding while a rebuild runs (a burst faster than any real ingest: the "
        "journal of writes to replay grows, and memory with it)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="FAISS threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", default="cpu", help="where the approximate index searches: cpu or cuda[:N]"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the exact Flat side")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "search.json")
    parser.add_argument("--json", action="store_true", help="print the JSON result to stdout")
    args = parser.parse_args()

    faiss.omp_set_num_threads(args.threads)
    data = Mixture(dim=args.dim, seed=args.seed)
    queries = data.queries(args.queries)
    latency_queries = queries[: args.latency_queries]
    result: dict = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}}

    log(f"building the approximate index over {args.vectors:,} x {args.dim} ({args.build})")
    ann, result["build"] = build_ann(args, data, queries)
    result["memory"] = {"peak_rss_gb_after_ann": round(peak_rss_gb(), 2)}
    log(
        f"  {ann.kind}: {ann.built.lists} lists, nprobe {ann.nprobe}, built in "
        f"{result['build']['seconds']}s; peak rss {peak_rss_gb():.1f} GB"
    )

    faiss.omp_set_num_threads(args.threads)
    began = time.perf_counter()
    _, ann_found = ann.search(queries, K)
    ann_batch = {
        "queries": len(queries),
        "qps": round(len(queries) / (time.perf_counter() - began), 1),
    }
    result["ann"] = {
        "kind": ann.kind,
        "vectors": ann.ntotal,
        "lists": ann.built.lists,
        "nprobe": ann.nprobe,
        "trained_on": ann.built.vectors,
        "calibrated_recall": round(ann.built.recall, 4),
        "batch": {"threads": args.threads, **ann_batch},
        "single": [single_query_latency(ann, latency_queries, t) for t in (1, args.threads)],
    }

    if not args.no_baseline:
        log("building the exact Flat baseline")
        flat_policy = IndexPolicy(flat_max_vectors=max(args.vectors, 1), background=False)
        began = time.perf_counter()
        flat = VectorIndex(data.dim, policy=flat_policy)
        flat.reserve(args.vectors)
        for ids, vectors in data.chunks(args.vectors, args.chunk):
            flat.add(ids, vectors)
        built_s = time.perf_counter() - began
        faiss.omp_set_num_threads(args.threads)
        began = time.perf_counter()
        _, truth = flat.search(queries, K)
        flat_batch = {
            "queries": len(queries),
            "qps": round(len(queries) / (time.perf_counter() - began), 2),
        }
        result["flat"] = {
            "kind": flat.kind,
            "vectors": flat.ntotal,
            "build_seconds": round(built_s, 1),
            "batch": {"threads": args.threads, **flat_batch},
            "single": [
                single_query_latency(flat, queries[: args.flat_latency_queries], t)
                for t in (1, args.threads)
            ],
        }
        # Flat at the policy's threshold: the slowest exact search the service does.
        small = VectorIndex(data.dim, policy=flat_policy)
        small.add(*next(data.chunks(args.threshold, args.threshold)))
        result["flat_at_threshold"] = {
            "vectors": small.ntotal,
            "single": [
                single_query_latency(small, latency_queries[:100], t) for t in (1, args.threads)
            ],
        }
        del small
        recall = recall_at_k(ann_found, truth)
        result["ann"]["recall_at_10"] = round(recall, 4)
        # nprobe against recall and latency, for choosing a different operating point.
        calibrated = ann.nprobe
        sweep = []
        for nprobe in sorted({max(1, calibrated // 2), calibrated, calibrated * 2}):
            ann.nprobe = nprobe
            _, found = ann.search(queries, K)
            latency = single_query_latency(ann, latency_queries[:200], args.threads)
            sweep.append(
                {
                    "nprobe": ann.nprobe,
                    "recall_at_10": round(recall_at_k(found, truth), 4),
                    "p50_ms": latency["p50_ms"],
                    "p99_ms": latency["p99_ms"],
                }
            )
        ann.nprobe = calibrated
        result["ann"]["nprobe_sweep"] = sweep
        best_single = min(s["p50_ms"] for s in result["ann"]["single"])
        result["targets"] = {
            "recall_at_10_ge_0.95": recall >= 0.95,
            "single_query_p50_le_10ms": best_single <= 10.0,
            "peak_rss_le_24gb": peak_rss_gb() <= 24.0,
        }
    result["memory"]["peak_rss_gb"] = round(peak_rss_gb(), 2)
    result["memory"]["ann_codes_gb"] = round(ann.ntotal * (args.dim * 2 + 8) / 1024**3, 2)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    summarise(result)
    if args.json:
        print(json.dumps(result, indent=2))
    log(f"written to {args.out}")
    return 0


def summarise(result: dict) -> None:
    ann = result["ann"]
    rows = [("IVF-fp16 (policy)", ann)]
    if "flat" in result:
        rows.insert(0, ("Flat (exact baseline)", result["flat"]))
    log("")
    log("| index | recall@10 | batch QPS | p50 1 thr | p99 1 thr | p50 N thr | p99 N thr |")
    log("|---|---|---|---|---|---|---|")
    for name, side in rows:
        single = {s["threads"]: s for s in side["single"]}
        one, two = single.get(1, {}), single.get(max(single), {})
        recall = side.get("recall_at_10", 1.0 if side["kind"] == "flat" else "?")
        log(
            f"| {name} | {recall} | {side['batch']['qps']} | {one.get('p50_ms')} ms | "
            f"{one.get('p99_ms')} ms | {two.get('p50_ms')} ms | {two.get('p99_ms')} ms |"
        )
    log(
        f"\nIVF: {ann['lists']} lists, nprobe {ann['nprobe']}, trained on {ann['trained_on']:,}; "
        f"peak RSS {result['memory']['peak_rss_gb']} GB; targets {result.get('targets')}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
