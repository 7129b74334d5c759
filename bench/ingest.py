"""Ingest throughput: `strata index` into a running server vs a naive PyTorch loop, same run.

    python bench/ingest.py                    # 384 photos, 3 interleaved repeats
    python bench/ingest.py --images 512 --repeats 5 --json

Photos: N distinct JPEGs of typical ImageNet size (500x375 or 375x500, quality 90), random
crops, flips and exposure changes of scikit-image's colour photos, in a temporary folder.

Strata: a server subprocess (`strata serve` on a free port, SQLite + FAISS in a temporary
data folder) and the `strata index` command run in this process against it; files in,
vectors committed to SQL and added to FAISS at edges, parts and semantics of
efficientnet_lite0. The clock runs from the first file read to the last result.

Baseline: what one would write first: Pillow decode, torchvision transforms (Resize(256,
bicubic), CenterCrop(224), ToTensor, Normalize(0.5, 0.5)), eager fp32 forward of the same
backbone (timm tf_efficientnet_lite0, real weights, loaded through indexer.backbones) in
batches, one process, forward hooks tapping the same three layers (global average pool,
L2 norm). The clock runs from the first file read to the last vector in memory.

The two alternate (baseline first on even repeats, Strata first on odd ones) so load from
other processes falls on both; medians are compared. Checks: every vector Strata stored,
read back from SQL, against the baseline's fp32 vector for the same file (min cosine per
depth, must be >= 0.99); every item finds itself first through FAISS at every depth.

Roofline (bench/roofline.py): each stage's CPU cost alone, in this process, measured right
after each Strata run; each run's share of the rate its stages allow, and the median share.
Results go to bench/out/ingest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import roofline  # noqa: E402  (bench/roofline.py)
from common import MIXED_SIZES, parse_sizes, run_index, strata_server, write_photos  # noqa: E402

BACKBONE = "efficientnet_lite0"
DEPTHS = ("edges", "parts", "semantics")
MIN_COSINE = 0.99

# -- baseline -------------------------------------------------------------------------------


@dataclass
class Baseline:
    """The naive loop: Pillow + torchvision transforms + eager fp32 forward with hooks, on
    the GPU when there is one (the "GPU idling at 7 images/s" setup), else on the CPU."""

    model: Any
    transform: Any
    layers: dict[str, str]  # depth -> layer name
    batch_size: int
    device: str

    @classmethod
    def load(cls, batch_size: int) -> Baseline:
        import torch
        from torchvision import transforms as T

        from indexer.backbones.registry import get_backbone
        from indexer.backbones.weights import resolve_weights_file

        spec = get_backbone(BACKBONE)
        model = spec.architecture()
        spec.weights.load(model, resolve_weights_file(spec, None))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model.eval().to(device)
        pre = spec.preprocessing
        transform = T.Compose(
            [
                T.Resize(pre.resize, interpolation=T.InterpolationMode.BICUBIC),
                T.CenterCrop(pre.crop),
                T.ToTensor(),
                T.Normalize(pre.mean, pre.std),
            ]
        )
        layers = {d: spec.layer_for(d) for d in DEPTHS}
        return cls(model, transform, layers, batch_size, device)

    def run(self, paths: Sequence[Path]) -> dict[str, dict[str, np.ndarray]]:
        """uri -> depth -> unit vector."""
        import torch
        import torch.nn.functional as F
        from PIL import Image

        modules = dict(self.model.named_modules())
        captured: dict[str, torch.Tensor] = {}
        handles = [
            modules[layer].register_forward_hook(
                lambda _m, _i, out, depth=depth: captured.__setitem__(depth, out)
            )
            for depth, layer in self.layers.items()
        ]
        out: dict[str, dict[str, np.ndarray]] = {}
        try:
            for start in range(0, len(paths), self.batch_size):
                chunk = paths[start : start + self.batch_size]
                images = []
                for path in chunk:
                    with Image.open(path) as image:
                        images.append(self.transform(image.convert("RGB")))
                with torch.inference_mode():
                    self.model(torch.stack(images).to(self.device))
                pooled = {
                    depth: F.normalize(t.mean(dim=(2, 3)) if t.dim() == 4 else t.flatten(1), dim=1)
                    for depth, t in captured.items()
                }
                for row, path in enumerate(chunk):
                    out[str(path)] = {d: pooled[d][row].cpu().numpy().copy() for d in DEPTHS}
        finally:
            for handle in handles:
                handle.remove()
        return out


# -- Strata ---------------------------------------------------------------------------------


def strata_index(
    address: str, folder: Path, collection: str, streams: int = 2
) -> tuple[dict[str, Any], float]:
    """Create the collection, then run the `strata index` command itself, in this process;
    returns its JSON document and the seconds the command took."""
    from service.client import StrataClient

    with StrataClient(address) as client:
        # The baseline is the ImageNet recipe: the collection frames photos the same way.
        client.create_collection(collection, BACKBONE, list(DEPTHS), framing="center-crop")
    return run_index(address, folder, collection, streams)


def stored_vectors(
    database_url: str, collection: str
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, int]]:
    """uri -> depth -> vector, and uri -> item id, read back from SQL."""
    from sqlalchemy import create_engine, select

    from indexer.store.models import Collection, Item, Vector

    engine = create_engine(database_url)
    vectors: dict[str, dict[str, np.ndarray]] = {}
    ids: dict[str, int] = {}
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(Item.uri, Item.id, Vector.depth, Vector.data)
                .join(Vector, Vector.item_id == Item.id)
                .join(Collection, Collection.id == Item.collection_id)
                .where(Collection.name == collection)
            )
            for uri, item_id, depth, data in rows:
                vectors.setdefault(uri, {})[depth] = np.frombuffer(data, dtype=np.float32)
                ids[uri] = item_id
    finally:
        engine.dispose()
    return vectors, ids


def faiss_finds_itself(address: str, collection: str, ids: Sequence[int]) -> bool:
    """Search by stored id: each item must come back first at every depth (FAISS holds it)."""
    from service.client import StrataClient

    with StrataClient(address) as client:
        results = client.search(collection, list(ids), depths=list(DEPTHS), k=1)
    for item_id, result in zip(ids, results, strict=True):
        by_depth = {r.depth: list(r.hits) for r in result.results}
        for depth in DEPTHS:
            hits = by_depth.get(depth, [])
            if not hits or hits[0].id != item_id:
                return False
    return bool(ids)


# -- report ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import torch

    from indexer.engine.openvino_engine import import_openvino

    model = platform.processor() or "unknown"
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    versions: dict[str, str] = {"torch": torch.__version__}
    with contextlib.suppress(ImportError):
        versions["openvino"] = import_openvino().__version__
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "simd": sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")),
        "cuda": torch.cuda.is_available(),
        "versions": versions,
        "python": platform.python_version(),
    }


def load() -> float:
    return round(os.getloadavg()[0], 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=384, help="photos per run (default 384)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of each")
    parser.add_argument("--batch-size", type=int, default=32, help="baseline batch size")
    parser.add_argument("--engine", default=None, help="STRATA_ENGINE for the server")
    parser.add_argument("--precision", default=None, help="STRATA_PRECISION for the server")
    parser.add_argument("--server-batch-size", type=int, default=None, help="STRATA_BATCH_SIZE")
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=MIXED_SIZES,
        help="photo sizes, taken in turn (default 500x375,1024x768,3000x2000)",
    )
    parser.add_argument("--streams", type=int, default=2, help="strata index --streams")
    parser.add_argument("--json", action="store_true", help="print only the JSON document")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    sizes_text = ",".join(f"{w}x{h}" for w, h in args.sizes)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print

    # The server sees this shell's STRATA_* settings (bench/gpu_check.sh sets some).
    env = {k: v for k, v in os.environ.items() if k.startswith("STRATA_")}
    env["STRATA_DEVICE"] = os.environ.get("STRATA_DEVICE", "auto")
    for name, value in (
        ("ENGINE", args.engine),
        ("PRECISION", args.precision),
        ("BATCH_SIZE", args.server_batch_size),
    ):
        if value is not None:
            env[f"STRATA_{name}"] = str(value)

    with tempfile.TemporaryDirectory(prefix="strata-bench-") as tmp:
        root = Path(tmp)
        photos = root / "photos"
        photos.mkdir()
        say(f"making {args.images} photos of {sizes_text} ...")
        paths = write_photos(photos, args.images, sizes=args.sizes)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        warm = root / "warmup"
        warm.mkdir()
        # Two full server batches at least: on a GPU the first batch of each new shape pays
        # for kernel selection and allocator growth, which belongs to the warm-up.
        write_photos(warm, max(64, 2 * (args.server_batch_size or 32)), seed=1, sizes=args.sizes)

        baseline = Baseline.load(args.batch_size)
        baseline.run(sorted(warm.iterdir())[: args.batch_size])  # allocator and kernel warm-up

        data_dir = root / "data"
        runs: list[dict[str, Any]] = []
        reference: dict[str, dict[str, np.ndarray]] = {}
        roofs: list[dict[str, Any]] = []
        with (
            strata_server(data_dir, env, root / "server.log") as server,
            roofline.Roofline(paths, root / "roofline-data", env, DEPTHS) as stages,
        ):
            address = server.address
            say(f"server on {address}; warming up (model load, engine build) ...")
            started = time.perf_counter()
            strata_index(address, warm, "warmup")
            warmup_s = time.perf_counter() - started
            for repeat in range(args.repeats):
                order = ("baseline", "strata") if repeat % 2 == 0 else ("strata", "baseline")
                for kind in order:
                    before = load()
                    cpu_before = time.process_time() + server.cpu_seconds()
                    if kind == "baseline":
                        started = time.perf_counter()
                        vectors = baseline.run(paths)
                        seconds = time.perf_counter() - started
                        reference = reference or vectors
                        added = len(vectors)
                    else:
                        document, seconds = strata_index(
                            address, photos, f"bench{repeat}", args.streams
                        )
                        added = int(document["added"])
                    # This process (baseline, or the index client) plus the server process.
                    cpu = time.process_time() + server.cpu_seconds() - cpu_before
                    if added != len(paths):
                        raise SystemExit(f"{kind} produced {added} of {len(paths)} images")
                    runs.append(
                        {
                            "kind": kind,
                            "repeat": repeat,
                            "seconds": round(seconds, 3),
                            "images_per_s": round(len(paths) / seconds, 2),
                            "cpu_seconds": round(cpu, 2),
                            "images_per_cpu_s": round(len(paths) / cpu, 2),
                            "load_before": before,
                            "load_after": load(),
                        }
                    )
                    say(f"  {kind:8s} repeat {repeat}: {len(paths) / seconds:7.1f} images/s")
                    if kind == "strata":
                        # The stages alone, right after the run, as the machine runs now.
                        roofs.append(stages.measure())
                        allowed = roofs[-1]["allowed_images_per_s"]
                        runs[-1]["roofline_allows"] = allowed
                        runs[-1]["share_of_roofline"] = round(len(paths) / seconds / allowed, 3)
                        say(f"  {'stages':8s} repeat {repeat}: allow {allowed:.1f} images/s")

            database_url = f"sqlite:///{data_dir / 'strata.db'}"
            cosine = {d: 1.0 for d in DEPTHS}
            faiss_ok = True
            for repeat in range(args.repeats):
                stored, ids = stored_vectors(database_url, f"bench{repeat}")
                if len(stored) != len(paths):
                    raise SystemExit(f"SQL holds {len(stored)} of {len(paths)} items")
                for uri, by_depth in stored.items():
                    for depth in DEPTHS:
                        value = float(np.dot(by_depth[depth], reference[uri][depth]))
                        cosine[depth] = min(cosine[depth], value)
                sample = sorted(ids.values())[:: max(1, len(ids) // 16)]
                faiss_ok = faiss_ok and faiss_finds_itself(address, f"bench{repeat}", sample)
            server_log = (root / "server.log").read_text()
        roof = roofline.median(roofs)

    def median(kind: str, key: str = "images_per_s") -> float:
        return statistics.median(r[key] for r in runs if r["kind"] == kind)

    result = {
        "benchmark": "ingest",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "images": len(paths),
        "photo_size": sizes_text,
        "megabytes": round(megabytes, 1),
        "backbone": BACKBONE,
        "depths": list(DEPTHS),
        "server_env": env,
        "streams": args.streams,
        "engine": _engine_from_log(server_log),
        "warmup_s": round(warmup_s, 1),
        "runs": runs,
        "baseline_images_per_s": round(median("baseline"), 2),
        "strata_images_per_s": round(median("strata"), 2),
        "ratio": round(median("strata") / median("baseline"), 2),
        "baseline_images_per_cpu_s": round(median("baseline", "images_per_cpu_s"), 2),
        "strata_images_per_cpu_s": round(median("strata", "images_per_cpu_s"), 2),
        "cpu_ratio": round(
            median("strata", "images_per_cpu_s") / median("baseline", "images_per_cpu_s"), 2
        ),
        "roofline": roof,
        # Each run against the stages measured right after it, then the median.
        "share_of_roofline": round(median("strata", "share_of_roofline"), 3),
        "min_cosine": {d: round(v, 5) for d, v in cosine.items()},
        "cosine_ok": all(v >= MIN_COSINE for v in cosine.values()),
        "faiss_finds_itself": faiss_ok,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out_file = args.out / "ingest.json"
    out_file.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(report(result))
        print(f"\nwritten to {out_file}")
    return 0 if result["cosine_ok"] and faiss_ok else 1


def _engine_from_log(log: str) -> str:
    """The engine the server built for the benchmark's taps (it logs each one)."""
    engines = [line.split("): ", 1)[1] for line in log.splitlines() if "engine for " in line]
    return engines[-1] if engines else "?"


def report(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"machine: {m['cpu']}, {m['cores']} cores, {' '.join(m['simd'])}"
        + (", CUDA" if m["cuda"] else ""),
        f"{result['images']} JPEGs of {result['photo_size']} ({result['megabytes']} MB), "
        f"{result['backbone']} at {', '.join(result['depths'])}; server engine "
        f"{result['engine']}, warm-up {result['warmup_s']} s",
        "",
        f"{'run':<10}{'repeat':>7}{'images/s':>11}{'images/CPU-s':>14}{'load before/after':>20}"
        f"{'stages allow':>14}{'share':>7}",
    ]
    for r in result["runs"]:
        beside = (
            f"{r['roofline_allows']:>14.1f}{r['share_of_roofline']:>7.0%}"
            if "roofline_allows" in r
            else ""
        )
        lines.append(
            f"{r['kind']:<10}{r['repeat']:>7}{r['images_per_s']:>11.1f}"
            f"{r['images_per_cpu_s']:>14.1f}"
            f"{r['load_before']:>12.2f} / {r['load_after']:<6.2f}{beside}"
        )
    lines += [
        "",
        f"{'(medians)':<10}{'images/s':>17}{'images/CPU-s':>14}",
        f"{'baseline':<10}{result['baseline_images_per_s']:>17.1f}"
        f"{result['baseline_images_per_cpu_s']:>14.1f}",
        f"{'strata':<10}{result['strata_images_per_s']:>17.1f}"
        f"{result['strata_images_per_cpu_s']:>14.1f}",
        f"{'ratio':<10}{result['ratio']:>16.2f}x{result['cpu_ratio']:>13.2f}x",
        "min cosine vs fp32 baseline: "
        + ", ".join(f"{d} {v:.5f}" for d, v in result["min_cosine"].items())
        + ("  (ok)" if result["cosine_ok"] else f"  (BELOW {MIN_COSINE})"),
        f"every item finds itself first through FAISS: {result['faiss_finds_itself']}",
        roofline.report(
            result["roofline"], result["strata_images_per_s"], result["share_of_roofline"]
        ),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
