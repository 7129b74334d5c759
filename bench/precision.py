"""Reduced precision on the CPU, measured for what users feel: forward images/s, cosine to
fp32 at each depth, recall@10 of the neighbours fp32 finds, and linear-probe accuracy.

    python bench/precision.py                     # fp32, auto (the default) and bf16
    python bench/precision.py --int8              # + int8 (needs `pip install nncf`)

Data: CIFAR-10 from ../shared/datasets (--train per class as the database and probe
training set, --test per class as queries and probe test set), framed whole (the default
rule for thumbnails), Lite0 at edges, parts and semantics, through the library's OpenVINO
engine in this process. auto: fp32 through the backbone's first layers, bf16 after, on a
CPU with native bf16 (fp32 elsewhere). int8: OpenVINO's graph quantized by NNCF
(post-training, MIXED preset, the stem convolution kept in fp32) on --calibration other
train images. Results
go to bench/out/precision.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ZIP = ROOT.parent / "shared" / "datasets" / "cifar10-small.zip"
DEPTHS = ("edges", "parts", "semantics")


def cifar(per_class: int, split: str, skip: int = 0) -> tuple[list[tuple[str, bytes]], np.ndarray]:
    with zipfile.ZipFile(ZIP) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        classes = sorted({n.split("/")[1] for n in names})
        chosen = [
            n
            for c in classes
            for n in [m for m in names if m.startswith(f"{split}/{c}/")][skip : skip + per_class]
        ]
        labels = np.array([classes.index(n.split("/")[1]) for n in chosen])
        return [(n, archive.read(n)) for n in chosen], labels


def probe_accuracy(
    train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray
) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    model = LogisticRegression(C=0.1, max_iter=2000).fit(scaler.transform(train), y_train)
    return float(model.score(scaler.transform(test), y_test))


def neighbours(database: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    scores = queries @ database.T
    return np.argsort(-scores, axis=1)[:, :k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=int, default=200, help="train images per class")
    parser.add_argument("--test", type=int, default=100, help="test images per class")
    parser.add_argument("--calibration", type=int, default=30, help="int8: images per class")
    parser.add_argument("--int8", action="store_true", help="also int8 through NNCF")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "precision.json")
    args = parser.parse_args()
    if not ZIP.is_file():
        raise SystemExit(f"needs {ZIP} (CIFAR-10 subset of ../shared/datasets)")

    from indexer.catalog.collections import create_collection
    from indexer.catalog.context import Context
    from indexer.core.settings import Settings
    from indexer.imaging.prepare import PreparedImage, prepare_many

    train, y_train = cifar(args.train, "train")
    test, y_test = cifar(args.test, "test")
    calibration, _ = cifar(args.calibration, "train", skip=args.train)
    precisions = ["fp32", "auto", "bf16"] + (["int8"] if args.int8 else [])
    vectors: dict[str, dict[str, np.ndarray]] = {}
    speed: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="strata-precision-") as tmp:
        for precision in precisions:
            engine_precision = "fp32" if precision == "int8" else precision
            settings = Settings.load(
                env={"STRATA_PRECISION": engine_precision},
                data_dir=Path(tmp) / precision,
                device="cpu",
            )
            ctx = Context.open(settings)
            try:
                info = create_collection(ctx, "p", depths=list(DEPTHS), framing="whole")
                backbone = ctx.backbones.get(info.backbone)
                pre = backbone.spec.preprocessing.framed(info.framing)
                layers = [d.layer for d in info.depths]

                def pixels(named: list[tuple[str, bytes]], ctx: Context = ctx) -> np.ndarray:
                    done = prepare_many(named, pre, 10**8, ctx.decode_pool)  # noqa: B023
                    return np.stack(
                        [np.asarray(p.pixels) for p in done if isinstance(p, PreparedImage)]
                    )

                batch = np.concatenate([pixels(train), pixels(test)])
                engine = backbone.engine(layers, info.pooling)
                if precision == "int8":
                    dims = [d.dim for d in sorted(info.depths, key=lambda d: d.layer)]
                    engine = _int8_engine(dims, pixels(calibration))
                import torch

                engine.run(torch.from_numpy(batch[:32]))  # warm
                began, cpu = time.perf_counter(), time.process_time()
                outputs = []
                for start in range(0, len(batch), 32):
                    outputs.append(engine.run(torch.from_numpy(batch[start : start + 32])))
                wall, cpu = time.perf_counter() - began, time.process_time() - cpu
                order = sorted(layers)  # the engine's output order (canonical_layers)
                vectors[precision] = {
                    d.name: np.concatenate([o[order.index(d.layer)] for o in outputs])
                    for d in info.depths
                }
                speed[precision] = {
                    "images_per_s": round(len(batch) / wall, 1),
                    "cpu_ms_per_image": round(cpu / len(batch) * 1000, 2),
                    "engine": engine.description,
                }
                print(f"{precision}: {speed[precision]} ({engine.description})", flush=True)
            finally:
                ctx.close()

    n_train = len(train)
    result: dict[str, Any] = {"benchmark": "precision", "speed": speed, "depths": {}}
    reference = vectors["fp32"]
    for depth in DEPTHS:
        ref = reference[depth]
        truth = neighbours(ref[:n_train], ref[n_train:])
        rows = {}
        for precision in precisions:
            v = vectors[precision][depth]
            v = v / np.linalg.norm(v, axis=1, keepdims=True)
            r = ref / np.linalg.norm(ref, axis=1, keepdims=True)
            cosine = np.sum(v * r, axis=1)
            found = neighbours(v[:n_train], v[n_train:])
            recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
            rows[precision] = {
                "min_cosine": round(float(cosine.min()), 5),
                "mean_cosine": round(float(cosine.mean()), 5),
                "recall_at_10_vs_fp32": round(float(recall), 4),
                "probe_accuracy": round(
                    probe_accuracy(v[:n_train], y_train, v[n_train:], y_test), 4
                ),
            }
        result["depths"][depth] = rows
        print(depth, json.dumps(rows), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _int8_engine(dims: list[int], calibration: np.ndarray) -> Any:
    """The fp32 OpenVINO engine's graph quantized by NNCF, as an object with `run`."""
    import nncf

    from indexer.engine.openvino_engine import import_openvino

    ov = import_openvino()
    source = _source_model(dims)
    quantized = nncf.quantize(
        source,
        nncf.Dataset(list(calibration), lambda a: a[None]),
        subset_size=len(calibration),
        preset=nncf.QuantizationPreset.MIXED,
        # Its weights do not fold under TF "same" padding; the first layer is sensitive anyway.
        ignored_scope=nncf.IgnoredScope(patterns=[".*conv_stem.*"]),
    )
    compiled = ov.Core().compile_model(
        quantized, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": 2}
    )
    from indexer.engine.openvino_engine import OpenVinoEngine

    return OpenVinoEngine(compiled, len(source.outputs), "int8")


def _source_model(dims: list[int]) -> Any:
    """The converted (not compiled) graph with outputs of these sizes, from the engine cache
    (the fp32 engine built just before converted it, or found it there)."""
    from indexer.engine.openvino_engine import import_openvino

    ov = import_openvino()
    cache = sorted(
        (Path.home() / ".cache" / "strata" / "openvino").glob("*.xml"),
        key=lambda p: p.stat().st_mtime,
    )
    for xml in reversed(cache):
        model = ov.Core().read_model(str(xml))
        sizes = [o.get_partial_shape()[-1] for o in model.outputs]
        known = [s.get_length() if s.is_static else None for s in sizes]
        # The global pool's width is dynamic in the graph: static sizes must all match.
        if len(known) == len(dims) and all(
            k in (None, d) for k, d in zip(known, dims, strict=True)
        ):
            return model
    raise SystemExit("no cached OpenVINO graph to quantize")


if __name__ == "__main__":
    sys.exit(main())
