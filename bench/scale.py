"""Beyond one machine's memory: compressed codes with re-ranking, and inverted lists on disk,
next to the service's IVF-fp16 index, on the same vectors in the same run.

Sides (all inner product on unit vectors, as the service searches):
- `ivf-fp16`: the service's index today (indexer.store.index_policy.build_index: IVF with
  fp16 codes, nprobe calibrated to the service's recall target). Everything in RAM.
- `ivf-pq`: IVF + product quantization (`--pq` bytes a vector), the codes in RAM; the top
  `rerank` candidates are re-scored exactly from the stored float32 vectors (a memory-mapped
  file here, as the service would read them from SQL or a vector file), then cut to 10.
- `ivf-pq-ondisk`: the same trained IVF-PQ, filled shard by shard and merged into one
  inverted-list file with faiss.contrib.ondisk.merge_ondisk, then searched memory-mapped:
  what stays in RAM is the coarse centroids and the PQ codebooks; the lists are paged in.

Reported per side: bytes per vector in RAM (and on disk), recall@10 against exact search
(faiss.contrib.exhaustive_search.knn_ground_truth over the stored vectors,
faiss.contrib.evaluation.knn_intersection_measure), single-query latency on one thread
(p50/p99; the page cache is warm after the first queries: a cold disk adds about nprobe
random reads of one list each), and build seconds.

Data: bench/search.py's Gaussian mixture shaped like Lite0 `semantics` embeddings (1,280
dims); queries are fresh draws, never stored vectors.

    python bench/scale.py                        # 300k vectors (~5 min on 2 cores)
    python bench/scale.py --vectors 1000000      # 1M (5 GB of float32 on disk)
    python bench/scale.py --vectors 50000 --queries 100 --json   # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from faiss.contrib.evaluation import knn_intersection_measure
from faiss.contrib.exhaustive_search import knn_ground_truth
from faiss.contrib.ondisk import merge_ondisk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from search import Mixture, log, machine, percentiles

from indexer.store.index_policy import IndexPolicy, build_index

OUT_DIR = Path(__file__).resolve().parent / "out"
K = 10


class Stored:
    """The stored float32 vectors, as a memory-mapped file; row i holds item id i + 1."""

    def __init__(self, path: Path, data: Mixture, total: int, chunk: int):
        self.path, self.total, self.dim, self.chunk = path, total, data.dim, chunk
        if not path.exists() or path.stat().st_size != total * data.dim * 4:
            log(f"writing {total:,} stored vectors to {path}")
            out = np.lib.format.open_memmap(path, "w+", np.float32, (total, data.dim))
            for ids, vectors in data.chunks(total, chunk):
                out[ids[0] - 1 : ids[-1]] = vectors
            out.flush()
            del out
        self.vectors = np.load(path, mmap_mode="r")

    def chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, self.total, self.chunk):
            stop = min(start + self.chunk, self.total)
            ids = np.arange(start + 1, stop + 1, dtype=np.int64)
            yield ids, np.ascontiguousarray(self.vectors[start:stop])

    def blocks(self) -> Iterator[np.ndarray]:
        for _, vectors in self.chunks():
            yield vectors

    def sample(self, count: int, seed: int = 0) -> np.ndarray:
        rows = np.sort(np.random.default_rng(seed).choice(self.total, count, replace=False))
        return np.ascontiguousarray(self.vectors[rows])


def rerank(
    stored: Stored, query: np.ndarray, ids: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact scores of the candidates from the stored vectors; the best k, best first."""
    ids = ids[ids >= 0]
    rows = np.sort(ids - 1)  # sorted reads: fewer page faults on the file
    scores = stored.vectors[rows] @ query
    best = np.argsort(-scores)[:k]
    return scores[best], rows[best] + 1


def timed_search(
    index: faiss.Index,
    queries: np.ndarray,
    nprobe: int,
    candidates: int,
    stored: Stored | None,
) -> tuple[np.ndarray, list[float]]:
    """One query at a time (the service's single-query path): found ids and seconds."""
    params = faiss.SearchParametersIVF(nprobe=nprobe)
    found = np.full((len(queries), K), -1, np.int64)
    seconds = []
    for i, query in enumerate(queries):
        began = time.perf_counter()
        _, ids = index.search(query[None, :], candidates, params=params)
        if stored is not None:
            _, best = rerank(stored, query, ids[0], K)
            found[i, : len(best)] = best
        else:
            found[i] = ids[0, :K]
        seconds.append(time.perf_counter() - began)
    return found, seconds


def measure(
    name: str,
    index: faiss.Index,
    queries: np.ndarray,
    truth: np.ndarray,
    nprobe: int,
    rerank_to: int,
    stored: Stored | None,
) -> dict[str, Any]:
    timed_search(index, queries[:20], nprobe, max(K, rerank_to), stored)  # warm up
    found, seconds = timed_search(
        index, queries, nprobe, max(K, rerank_to), stored if rerank_to else None
    )
    recall = float(knn_intersection_measure(found, truth[:, :K]))
    row = {
        "side": name,
        "nprobe": nprobe,
        "rerank": rerank_to,
        "recall_at_10": round(recall, 4),
        **percentiles(seconds),
    }
    log(
        f"  {name:14s} nprobe {nprobe:3d} rerank {rerank_to:4d}: recall@10 {recall:.3f}, "
        f"p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms"
    )
    return row


def train_ivf_pq(dim: int, lists: int, pq: int, train: np.ndarray, opq: bool) -> faiss.Index:
    key = f"{f'OPQ{pq},' if opq else ''}IVF{lists},PQ{pq}"
    index = faiss.index_factory(dim, key, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.cp.spherical = True  # unit vectors: centroids on the sphere, as the service trains
    ivf.cp.niter = 10
    if isinstance(ivf, faiss.IndexIVFPQ):
        # 256 centroids per sub-quantizer: 10 k-means rounds over <= 64 points a centroid
        # are plenty for a bench and keep training to minutes on 2 shared cores.
        ivf.pq.cp.niter = 10
        ivf.pq.cp.max_points_per_centroid = 64
        ivf.do_polysemous_training = False  # Hamming pre-filter unused; it costs minutes
    index.train(train)
    return index


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=300_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--pq", type=int, default=64, help="PQ bytes (sub-quantizers) a vector")
    parser.add_argument("--opq", action="store_true", help="an OPQ rotation before IVF-PQ")
    parser.add_argument("--shards", type=int, default=4, help="shards merged on disk")
    parser.add_argument("--chunk", type=int, default=50_000)
    parser.add_argument("--threads", type=int, default=2, help="FAISS threads to build")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=OUT_DIR / "scale", help="files go here")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "scale.json")
    parser.add_argument("--json", action="store_true", help="print the JSON result to stdout")
    args = parser.parse_args()

    faiss.omp_set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    data = Mixture(dim=args.dim, seed=args.seed)
    stored = Stored(
        args.work / f"vectors-{args.vectors}-{args.dim}.npy", data, args.vectors, args.chunk
    )
    queries = data.queries(args.queries)
    result: dict[str, Any] = {
        "machine": machine(),
        "args": {k: str(v) for k, v in vars(args).items()},
        "rows": [],
        "build": {},
    }

    log("exact ground truth (knn_ground_truth over the stored vectors)")
    began = time.perf_counter()
    _, truth = knn_ground_truth(queries, stored.blocks(), K, faiss.METRIC_INNER_PRODUCT)
    truth = truth + 1  # rows -> item ids
    result["build"]["ground_truth_s"] = round(time.perf_counter() - began, 1)

    policy = IndexPolicy(flat_max_vectors=min(50_000, args.vectors // 2))
    lists = policy.lists_for(args.vectors)

    # -- the service's index today --------------------------------------------------------
    log(f"ivf-fp16 (the service's build_index, {lists} lists)")
    began = time.perf_counter()
    built = build_index(args.dim, stored.chunks, args.vectors, policy)
    fp16 = built.index
    result["build"]["ivf_fp16_s"] = round(time.perf_counter() - began, 1)
    code = faiss.extract_index_ivf(fp16).code_size
    result["ivf_fp16"] = {
        "lists": built.report.lists,
        "calibrated_nprobe": built.report.nprobe,
        "ram_bytes_per_vector": code + 8,  # code + int64 id in the inverted list
    }
    faiss.omp_set_num_threads(1)  # the service's single-query threads
    for nprobe in sorted({built.report.nprobe, 2 * built.report.nprobe}):
        result["rows"].append(measure("ivf-fp16", fp16, queries, truth, nprobe, 0, None))
    del fp16, built

    # -- IVF-PQ in RAM, re-ranked from the stored vectors ----------------------------------
    faiss.omp_set_num_threads(args.threads)
    log(f"ivf-pq: {'OPQ + ' if args.opq else ''}IVF{lists},PQ{args.pq} (training)")
    began = time.perf_counter()
    train = stored.sample(min(args.vectors, max(40 * lists, 256 * 64)), args.seed)
    trained = train_ivf_pq(args.dim, lists, args.pq, train, args.opq)
    result["build"]["ivf_pq_train_s"] = round(time.perf_counter() - began, 1)
    empty = args.work / "trained.index"
    faiss.write_index(trained, str(empty))
    began = time.perf_counter()
    pq_index = faiss.read_index(str(empty))
    for ids, vectors in stored.chunks():
        pq_index.add_with_ids(vectors, ids)
    result["build"]["ivf_pq_add_s"] = round(time.perf_counter() - began, 1)
    ivf = faiss.extract_index_ivf(pq_index)
    result["ivf_pq"] = {
        "key": f"{'OPQ,' if args.opq else ''}IVF{lists},PQ{args.pq}",
        "ram_bytes_per_vector": ivf.code_size + 8,
        "stored_bytes_per_vector": args.dim * 4,  # float32, on disk, read for re-ranking
    }
    faiss.omp_set_num_threads(1)
    grid = [(16, 0), (16, 100), (32, 100), (32, 200), (64, 200)]
    for nprobe, rerank_to in grid:
        result["rows"].append(
            measure("ivf-pq", pq_index, queries, truth, nprobe, rerank_to, stored)
        )
    del pq_index

    # -- the same lists on disk: shards merged with merge_ondisk ---------------------------
    faiss.omp_set_num_threads(args.threads)
    log(f"ivf-pq-ondisk: {args.shards} shards merged into one inverted-list file")
    began = time.perf_counter()
    shard_files = []
    per_shard = -(-args.vectors // args.shards)
    for shard in range(args.shards):
        index = faiss.read_index(str(empty))
        lo, hi = shard * per_shard, min((shard + 1) * per_shard, args.vectors)
        for start in range(lo, hi, args.chunk):
            stop = min(start + args.chunk, hi)
            index.add_with_ids(
                np.ascontiguousarray(stored.vectors[start:stop]),
                np.arange(start + 1, stop + 1, dtype=np.int64),
            )
        path = args.work / f"shard-{shard}.index"
        faiss.write_index(index, str(path))
        shard_files.append(str(path))
        del index
    merged = faiss.read_index(str(empty))
    lists_file = args.work / "merged.ivfdata"
    merge_ondisk(merged, shard_files, str(lists_file))
    populated = args.work / "populated.index"
    faiss.write_index(merged, str(populated))
    del merged
    result["build"]["ondisk_s"] = round(time.perf_counter() - began, 1)
    # A plain read: its OnDiskInvertedLists map the .ivfdata file themselves (IO_FLAG_MMAP
    # on top crashes faiss 1.15 at the first search).
    ondisk = faiss.read_index(str(populated))
    centroids = faiss.extract_index_ivf(ondisk).nlist * args.dim * 4
    result["ivf_pq_ondisk"] = {
        "disk_bytes_per_vector": round(lists_file.stat().st_size / args.vectors, 1),
        "ram_bytes_fixed": centroids + args.pq * 256 * (args.dim // args.pq) * 4,
        "ram_bytes_per_vector": 0,  # the lists are memory-mapped: the page cache holds them
    }
    faiss.omp_set_num_threads(1)
    for nprobe, rerank_to in [(32, 100), (32, 200)]:
        result["rows"].append(
            measure("ivf-pq-ondisk", ondisk, queries, truth, nprobe, rerank_to, stored)
        )
    for path in shard_files:
        Path(path).unlink()

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    log(f"wrote {args.out}")
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
