"""`strata duplicates` on real photos with planted near-copies, old method against new.

    python bench/duplicates.py [--background 500] [--originals 20] [--pooling P] [--backbone B]

Builds a collection (edges, parts, semantics; the service's default backbone, pooling and
framing unless --pooling or --backbone say otherwise) through a real `strata serve` on a
temporary data folder (SQLite): `--background` CIFAR-10 test photos (equal per class; past
1,000, train photos too) and `--originals` train photos, each with 8 planted copies: the same
file (`exact`), a PNG of its pixels, JPEG quality 30, 96 px bicubic and 128 px bilinear PNG
upscales, a 24 px downscale, a 29 px crop (90% a side) and 10% brighter (JPEG 90
unless said). Each original and its copies make one planted
set of 9; a pair is true when both items are in one set. Then, per depth:

- `old`: union-find over every pair at cosine >= 0.9, the method before this bench (run
  here on the collection's vectors, read back through Embed, as the old server did);
- `old@new`: union-find at the new default threshold (how much the threshold alone does);
- `new`: `Duplicates` of the server with its defaults (star groups, per-depth threshold);
- `new@T`: the server at explicit thresholds T around the default (the sweep that chose the
  defaults; with another pooling or backbone, whose default is calibrated on the collection,
  at distances 1 - T of 1.5, 1.25, 0.8 and 0.6 times the default's).

For each: groups, pair precision and recall, planted sets found whole (one group holding
exactly the set), false groups (any group not inside one planted set: `background` ones hold
only background photos, CIFAR look-alikes and a few true CIFAR duplicates; `mixed` ones hold
planted copies with other photos or two sets) and the largest group. Also per depth: the
cosine of unrelated pairs (median, 99.9th percentile, max), each copy kind's lowest cosine to
its original, and the threshold the calibration (used for depths without a measured default)
would pick on this collection. Prints tables; JSON to bench/out/duplicates.json (--out).

The defaults of indexer.core.vocabulary.DEFAULT_DUPLICATE_THRESHOLDS are, per depth, the
lowest swept cosine with pair precision at least 0.95 both in the default run and in
`--background 2000 --originals 40` (about 15 s and 35 s on 2 cores).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import strata_server  # noqa: E402  (bench/common.py)

from indexer.catalog.duplicates import calibrated_threshold  # noqa: E402
from service.client import ImageToAdd, StrataClient  # noqa: E402

ZIP = ROOT.parent / "shared" / "datasets" / "cifar10-small.zip"
OUT = ROOT / "bench" / "out" / "duplicates.json"
DEPTHS = ("edges", "parts", "semantics")
OLD_THRESHOLD = 0.9
RELATIVE_SWEEP = (1.5, 1.25, 0.8, 0.6)
SWEEP = {
    "edges": (0.99, 0.993, 0.995, 0.9955, 0.996, 0.997),
    "parts": (0.93, 0.94, 0.945, 0.95, 0.955, 0.96),
    "semantics": (0.78, 0.8, 0.81, 0.82, 0.83, 0.85, 0.9),
}


def _encode(image: Image.Image, kind: str = "JPEG", quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    if kind == "JPEG":
        image.save(buffer, kind, quality=quality)
    else:
        image.save(buffer, kind)
    return buffer.getvalue()


COPIES: dict[str, Callable[[Image.Image, bytes], bytes]] = {
    "exact": lambda image, raw: raw,
    "png": lambda image, raw: _encode(image, "PNG"),
    "q30": lambda image, raw: _encode(image, quality=30),
    "up96": lambda image, raw: _encode(image.resize((96, 96), Image.Resampling.BICUBIC)),
    "up128png": lambda image, raw: _encode(
        image.resize((128, 128), Image.Resampling.BILINEAR), "PNG"
    ),
    "down24": lambda image, raw: _encode(image.resize((24, 24), Image.Resampling.LANCZOS)),
    "crop90": lambda image, raw: _encode(
        image.crop((1, 1, image.width - 2, image.height - 2))  # 29 of 32 px a side
    ),
    "bright": lambda image, raw: _encode(ImageEnhance.Brightness(image).enhance(1.1)),
}


def build_images(background: int, originals: int) -> list[tuple[str, bytes, str]]:
    """(uri, bytes, planted set or "") for the background photos, then each original and its
    copies. Background: test photos (then train ones from the start of each class), equal per
    class; originals: train photos from the end of each class, so never a background one."""
    with zipfile.ZipFile(ZIP) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        classes = sorted({n.split("/")[1] for n in names})
        by = {
            (s, c): [n for n in names if n.startswith(f"{s}/{c}/")]
            for s in ("test", "train")
            for c in classes
        }
        per_class = -(-background // len(classes))
        pool = [by["test", c] + by["train", c] for c in classes]
        chosen = [n for position in range(per_class) for n in (p[position] for p in pool)]
        images = [(f"bg/{n}", archive.read(n), "") for n in chosen[:background]]
        per_class = -(-originals // len(classes))
        sources = [by["train", c][-1 - k] for k in range(per_class) for c in classes][:originals]
        for name in sources:
            raw = archive.read(name)
            image = Image.open(io.BytesIO(raw)).convert("RGB")
            planted = name.removesuffix(".jpg").replace("/", "_")
            images.append((f"plant/{planted}/original.jpg", raw, planted))
            for kind, make in COPIES.items():
                images.append((f"plant/{planted}/{kind}", make(image, raw), planted))
    return images


# -- grouping and scoring ---------------------------------------------------------------------


def union_find(cosines: np.ndarray, threshold: float) -> list[list[int]]:
    """The old method: every pair at or above the threshold joined, transitively."""
    parent = list(range(len(cosines)))

    def root(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for a, b in zip(*np.nonzero(np.triu(cosines >= threshold, 1)), strict=True):
        ra, rb = root(int(a)), root(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for item in range(len(cosines)):
        groups.setdefault(root(item), []).append(item)
    return [g for g in groups.values() if len(g) > 1]


def score(groups: Sequence[Sequence[int]], truth: Sequence[str]) -> dict[str, Any]:
    """Pair precision/recall of `groups` (positions) against the planted sets in `truth`."""
    sets = Counter(t for t in truth if t)
    true_pairs = sum(n * (n - 1) // 2 for n in sets.values())
    found_pairs = hits = background = mixed = whole = 0
    for group in groups:
        labels = Counter(truth[i] for i in group)
        found_pairs += len(group) * (len(group) - 1) // 2
        hits += sum(n * (n - 1) // 2 for label, n in labels.items() if label)
        if set(labels) == {""}:
            background += 1
        elif len(labels) > 1:
            mixed += 1
        elif labels[next(iter(labels))] == sets[next(iter(labels))]:
            whole += 1
    return {
        "groups": len(groups),
        "precision": round(hits / found_pairs, 4) if found_pairs else 1.0,
        "recall": round(hits / true_pairs, 4),
        "whole": whole,
        "planted_sets": len(sets),
        "false_background": background,
        "false_mixed": mixed,
        "largest": max((len(g) for g in groups), default=0),
    }


def depth_figures(unit: np.ndarray, uris: list[str], truth: list[str]) -> dict[str, Any]:
    """Cosines of unrelated pairs, each copy kind's lowest cosine to its original, and what
    the calibration would choose here."""
    cosines = unit @ unit.T
    labels = np.array(truth)
    upper = np.triu_indices(len(unit), 1)
    unrelated = ~((labels[:, None] == labels[None, :]) & (labels[:, None] != ""))[upper]
    values = cosines[upper][unrelated]
    original = {t: i for i, (u, t) in enumerate(zip(uris, truth, strict=True)) if "original" in u}
    lowest: dict[str, float] = {}
    for i, (uri, planted) in enumerate(zip(uris, truth, strict=True)):
        kind = uri.rsplit("/", 1)[-1]
        if planted and kind in COPIES:
            similarity = float(cosines[i, original[planted]])
            lowest[kind] = round(min(lowest.get(kind, 1.0), similarity), 4)
    return {
        "unrelated_median": round(float(np.median(values)), 4),
        "unrelated_p999": round(float(np.quantile(values, 0.999)), 4),
        "unrelated_max": round(float(values.max()), 4),
        "copy_lowest": lowest,
        "calibrated_threshold": calibrated_threshold(
            unit[np.linspace(0, len(unit) - 1, min(len(unit), 2000)).astype(np.int64)], len(unit)
        ),
    }


# -- the run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    images = build_images(args.background, args.originals)
    uris = [u for u, _, _ in images]
    truth = [t for _, _, t in images]
    figures: dict[str, Any] = {
        "dataset": str(ZIP),
        "background": args.background,
        "originals": args.originals,
        "copy_kinds": list(COPIES),
        "items": len(images),
        "backbone": args.backbone or "default",
        "pooling": args.pooling or "default",
        "old_threshold": OLD_THRESHOLD,
        "depths": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {"STRATA_DEVICE": "cpu"}
        with strata_server(root / "data", env, root / "server.log") as server:
            client = StrataClient(server.address, timeout=600)
            name = "duplicates"
            client.create_collection(
                name, backbone=args.backbone, depths=list(DEPTHS), pooling=args.pooling
            )
            began = time.perf_counter()
            added = list(client.add_images(name, [ImageToAdd(u, d) for u, d, _ in images]))
            figures["index_seconds"] = round(time.perf_counter() - began, 1)
            if {r.status for r in added} != {"added"}:
                raise SystemExit(f"not every image was added: {Counter(r.status for r in added)}")
            position = {r.id: uris.index(r.uri) for r in added}
            embedded = client.embed([(u, d) for u, d, _ in images], collection=name)
            for depth in DEPTHS:
                matrix = np.array(
                    [next(list(v.values) for v in e.vectors if v.depth == depth) for e in embedded],
                    dtype=np.float32,
                )
                unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
                cosines = unit @ unit.T
                began = time.perf_counter()
                answer = client.duplicates(name, depth=depth)
                seconds = time.perf_counter() - began
                default = round(float(answer.threshold), 6)

                def positions(response: Any) -> list[list[int]]:
                    return [[position[m.id] for m in g.members] for g in response.groups]

                methods = {
                    "old": score(union_find(cosines, OLD_THRESHOLD), truth)
                    | {"threshold": OLD_THRESHOLD},
                    "old@new": score(union_find(cosines, default), truth) | {"threshold": default},
                    "new": score(positions(answer), truth)
                    | {"threshold": default, "seconds": round(seconds, 3)},
                }
                measured = not args.backbone and args.pooling in ("", "avg")
                sweep = SWEEP[depth] if measured else relative_sweep(default)
                for threshold in sweep:
                    swept = client.duplicates(name, depth=depth, threshold=threshold)
                    methods[f"new@{threshold:g}"] = score(positions(swept), truth) | {
                        "threshold": threshold
                    }
                figures["depths"][depth] = {
                    "methods": methods,
                    **depth_figures(unit, uris, truth),
                }
            client.delete_collection(name)
            client.close()
    return figures


def relative_sweep(default: float) -> list[float]:
    return [round(1.0 - (1.0 - default) * f, 4) for f in RELATIVE_SWEEP]


def print_tables(figures: dict[str, Any]) -> None:
    print(
        f"\n{figures['items']} items: {figures['background']} CIFAR background photos, "
        f"{figures['originals']} originals x (1 + {len(figures['copy_kinds'])} copies: "
        f"{', '.join(figures['copy_kinds'])}); backbone {figures['backbone']}, "
        f"pooling {figures['pooling']}"
    )
    header = (
        f"{'depth':10s}{'method':13s}{'cosine':>8s}{'groups':>7s}{'pair P':>8s}{'pair R':>8s}"
        f"{'whole':>7s}{'false bg':>9s}{'mixed':>6s}{'largest':>8s}"
    )
    print(header)
    print("-" * len(header))
    for depth, found in figures["depths"].items():
        for method, m in found["methods"].items():
            print(
                f"{depth:10s}{method:13s}{m['threshold']:>8g}{m['groups']:>7d}"
                f"{m['precision']:>8.3f}{m['recall']:>8.3f}"
                f"{m['whole']:>4d}/{m['planted_sets']:<2d}{m['false_background']:>9d}"
                f"{m['false_mixed']:>6d}{m['largest']:>8d}"
            )
        print()
    print("unrelated pairs' cosine (median / 99.9% / max), lowest copy cosine to its original:")
    for depth, found in figures["depths"].items():
        lowest = " ".join(f"{k} {v:.3f}" for k, v in found["copy_lowest"].items())
        print(
            f"  {depth:10s}{found['unrelated_median']:.3f} / {found['unrelated_p999']:.3f} / "
            f"{found['unrelated_max']:.3f}   calibrated {found['calibrated_threshold']:g}\n"
            f"  {'':10s}{lowest}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--background", type=int, default=500, help="CIFAR photos, no copies")
    parser.add_argument("--originals", type=int, default=20, help="photos planted with copies")
    parser.add_argument("--pooling", default="", help="avg, max or gem (default: the service's)")
    parser.add_argument("--backbone", default="", help="default: the service's")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if not ZIP.exists():
        print(f"bench/duplicates.py: {ZIP} is missing; nothing to measure", file=sys.stderr)
        return 2
    began = time.perf_counter()
    figures = run(args)
    figures["seconds"] = round(time.perf_counter() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print_tables(figures)
    print(f"\n{figures['seconds']} s; JSON in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
