"""Linear probes and label bootstrapping on CIFAR-10, end to end through the gRPC service.

    python bench/probe.py [--server HOST:PORT] [--seeds 3] [--framing whole|center-crop]

Indexes 300 training images per class (the first by name, labelled, metadata split=train)
and the 100 test images per class (unlabelled, split=test) into a collection tapping
stage 1 (edges), stage 2 (blocks.2), stage 3 (parts), stage 4 (blocks.6) and pre-logits
(semantics) of EfficientNet-Lite0, then measures, next to the reference figures of
../shared/datasets/README.md and, when the server runs in this process, scikit-learn's
LogisticRegression(C=0.1) on the same stored vectors:

1. probe per depth: 5-fold CV accuracy on train, and the stored probe's test accuracy;
2. `labels predict` with every train label: accuracy on the test images;
3. 10 labels per class: predicted accuracy on the rest and on test against the plain probe;
   then 5, 10 and 20 more per class chosen by `labels suggest` or at random (--seeds);
4. 5% and 20% of the train labels flipped: `labels issues` (cleanlab) against the
   hand-written method on the same probabilities, precision, recall and top-k precision;
5. `duplicates` at the default threshold.

Prints tables and writes bench/out/probe.json. Without --server it starts a server on a
temporary data folder (SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.client import ImageToAdd, StrataClient  # noqa: E402
from service.server import RunningServer, create_server  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402

ZIP = ROOT.parent / "shared" / "datasets" / "cifar10-small.zip"
OUT = ROOT / "bench" / "out" / "probe.json"
DATA = ROOT / "bench" / "out" / "probe-data"
TRAIN_PER_CLASS = 300
DEPTHS = {  # depth -> the README's name for that tap
    "edges": "stage 1",
    "blocks.2": "stage 2",
    "parts": "stage 3",
    "blocks.6": "stage 4",
    "semantics": "pre-logits",
}
REFERENCE = {"edges": 0.44, "blocks.2": 0.47, "parts": 0.65, "blocks.6": 0.78, "semantics": 0.76}
REFERENCE_10_PER_CLASS = 0.61
FEW = 10
FLIP_SHARES = (0.05, 0.20)
PARTS = ("framing", "probes", "predict", "few", "issues", "duplicates")

T0 = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# -- data and server --------------------------------------------------------------------


def load_cifar(
    path: Path, per_class: int, test_per_class: int = 100
) -> tuple[list[tuple[str, str, bytes]], list[str]]:
    """[(uri, class, jpeg)]: the first `per_class` train images of each class by name, then
    the first `test_per_class` test images of each class."""
    with zipfile.ZipFile(path) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        classes = sorted({n.split("/")[1] for n in names})
        chosen = [
            n
            for c in classes
            for n in [m for m in names if m.startswith(f"train/{c}/")][:per_class]
        ]
        chosen += [
            n
            for c in classes
            for n in [m for m in names if m.startswith(f"test/{c}/")][:test_per_class]
        ]
        return [(n, n.split("/")[1], archive.read(n)) for n in chosen], classes


class LocalServer:
    """A server in this process on its own event loop thread (as tests/conftest.py)."""

    def __init__(self, data_dir: Path):
        settings = ServiceSettings.load(data_dir=data_dir)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(create_server(settings, "127.0.0.1:0"), self.loop)
        self.running: RunningServer = future.result(300)
        self.address = f"127.0.0.1:{self.running.port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.running.stop(5), self.loop).result(120)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# -- 0. framing candidates ----------------------------------------------------------------

FRAMING_CANDIDATES = ("center-crop", "whole", "auto")
#: skimage photos with their ImageNet classes (any of these counts as a top-1 hit).
PHOTO_CLASSES = {
    "chelsea": (281, 282, 283, 284, 285),  # tabby, tiger, Persian, Siamese, Egyptian cat
    "coffee": (967, 968, 504),  # espresso, cup, coffee mug
    "rocket": (657, 744, 812),  # missile, projectile, space shuttle
    "stereo_motorcycle": (665, 670, 518),  # moped, motor scooter, crash helmet
}
#: Distinct photos (skimage's colour and grey ones) for the near-copy search, at their own
#: sizes (300-1,024 px on the shorter side but coins and text, 303 and 172).
COPY_SOURCES = (
    "astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle", "hubble_deep_field",
    "immunohistochemistry", "retina", "colorwheel", "camera", "brick", "grass", "gravel",
    "moon", "coins", "clock", "page", "text",
)  # fmt: skip
CROPS_PER_PHOTO = 8


def _jpeg(image: Any, quality: int = 90) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _skimage(name: str) -> Any:
    from PIL import Image
    from skimage import data as skdata

    array = (
        skdata.stereo_motorcycle()[0] if name == "stereo_motorcycle" else getattr(skdata, name)()
    )
    return Image.fromarray(array).convert("RGB")


def study_photos(seed: int = 0) -> list[tuple[str, str, Any]]:
    """(uri, source, PIL image): each photo of known class as is, then CROPS_PER_PHOTO
    random crops (50-100% of each side) resized to ImageNet's typical 500x375 (or 375x500)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for name in PHOTO_CLASSES:
        image = _skimage(name)
        out.append((f"{name}/original", name, image))
        for i in range(CROPS_PER_PHOTO):
            share = rng.uniform(0.5, 1.0)
            w, h = int(image.width * share), int(image.height * share)
            left = int(rng.integers(0, image.width - w + 1))
            top = int(rng.integers(0, image.height - h + 1))
            size = (500, 375) if w >= h else (375, 500)
            crop = image.crop((left, top, left + w, top + h)).resize(size, Image.Resampling.BICUBIC)
            out.append((f"{name}/crop{i}", name, crop))
    return out


def copies(image: Any) -> dict[str, Any]:
    """The near-copies a copy search must find: downscaled thumbnails, crops."""
    from PIL import Image

    w, h = image.size
    return {
        "thumb 128": image.resize((128, round(128 * h / w)), Image.Resampling.BICUBIC),
        "thumb 200": image.resize((200, round(200 * h / w)), Image.Resampling.BICUBIC),
        "crop 80%": image.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "crop 60%": image.crop((w // 5, h // 5, w - w // 5, h - h // 5)),
    }


def _embed(ctx: Any, framing: str, named: list[tuple[str, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """Pre-logits vectors (unit length) and ImageNet logits under a framing, in the process."""
    from indexer.engine.extract import embed_prepared
    from indexer.imaging.prepare import PreparedImage

    backbone = ctx.backbones.get("efficientnet_lite0")
    pre = backbone.spec.preprocessing.framed(framing)
    prepared = ctx.prepare_images(named, backbone, pre)
    good = [p for p in prepared if isinstance(p, PreparedImage)]
    assert len(good) == len(named), "a study photo failed to decode"
    layer = backbone.layer("semantics").name
    features = embed_prepared(backbone, good, [layer], "avg", 32, with_logits=True)
    assert features.logits is not None
    return features.vectors[layer], features.logits


def framing_study(
    ctx: Any, cifar: dict[str, dict[str, float]], distractors: list[tuple[str, bytes]]
) -> dict[str, Any]:
    """Per framing: ImageNet-head top-1 on photos of known class (a proxy: no ImageNet
    here); near-copy search: each distinct photo's thumbnails and crops as queries against
    the photos and `distractors` (CIFAR test images), recall@1 and the cosine to the
    original; and the CIFAR probes (`cifar`: framing -> depth -> sklearn test accuracy)."""
    photos = study_photos()
    named = [(u, _jpeg(im)) for u, _, im in photos]
    originals = [(name, _skimage(name)) for name in COPY_SOURCES]
    stored = [(f"{n}/original", _jpeg(im)) for n, im in originals] + distractors
    queries = [
        (f"{n}/{kind}", i, _jpeg(q))
        for i, (n, im) in enumerate(originals)
        for kind, q in copies(im).items()
    ]
    out: dict[str, Any] = {
        "photos_classified": len(photos),
        "copy_originals": len(originals),
        "copy_distractors": len(distractors),
        "queries": len(queries),
        "framings": {},
    }
    for framing in FRAMING_CANDIDATES:
        _, logits = _embed(ctx, framing, named)
        hits = [
            int(np.argmax(logits[i])) in PHOTO_CLASSES[src] for i, (_, src, _) in enumerate(photos)
        ]
        top5 = [
            bool(set(np.argsort(-logits[i])[:5]) & set(PHOTO_CLASSES[src]))
            for i, (_, src, _) in enumerate(photos)
        ]
        vectors, _ = _embed(ctx, framing, stored)
        q_vectors, _ = _embed(ctx, framing, [(u, d) for u, _, d in queries])
        scores = q_vectors @ vectors.T
        truth = np.array([i for _, i, _ in queries])
        found = scores.argmax(axis=1) == truth
        own = scores[np.arange(len(queries)), truth]
        per_kind = {}
        for kind in copies(originals[0][1]):
            mask = np.array([u.endswith("/" + kind) for u, _, _ in queries])
            per_kind[kind] = {
                "recall_at_1": float(found[mask].mean()),
                "mean_cosine": float(own[mask].mean()),
            }
        out["framings"][framing] = {
            "photo_top1": float(np.mean(hits)),
            "photo_top5": float(np.mean(top5)),
            "copy_recall_at_1": float(found.mean()),
            "copy_mean_cosine": float(own.mean()),
            "copy_share_above_0.9": float((own >= 0.9).mean()),
            "copy_per_kind": per_kind,
            "cifar_probe": cifar.get(framing, {}),
        }
        say(
            f"framing {framing}: photo top-1 {np.mean(hits):.3f}, copy recall@1 "
            f"{found.mean():.3f}, cosine {own.mean():.3f}"
        )
    return out


def cifar_probe_per_framing(
    client: StrataClient,
    local: LocalServer,
    items: list[tuple[str, str, bytes]],
    train_per_class: int,
    test_per_class: int,
) -> dict[str, dict[str, float]]:
    """sklearn C=0.1 test accuracy at stage 4 and pre-logits for a CIFAR collection under each
    framing (indexed once, kept in the data folder)."""
    out = {}
    for framing in FRAMING_CANDIDATES:
        name, _ = cifar_collection(client, framing, train_per_class, test_per_class)
        images = [ImageToAdd(u, d, [], {"split": u.split("/")[0]}) for u, _, d in items]
        results: list[Any] = timed(
            f"index CIFAR ({framing})",
            lambda name=name, images=images: list(client.add_images(name, images)),  # type: ignore[misc]
        )[0]
        ids = {r.uri: r.id for r in results}
        truth = {ids[u]: c for u, c, _ in items}
        train = [ids[u] for u, _, _ in items if u.startswith("train/")]
        test = [ids[u] for u, _, _ in items if u.startswith("test/")]
        accuracy = sklearn_baseline(local, name, train, test, truth)
        out[framing] = {d: accuracy[d] for d in ("blocks.6", "semantics")}
    return out


def cifar_collection(
    client: StrataClient, framing: str, train_per_class: int, test_per_class: int
) -> tuple[str, str]:
    """The CIFAR collection for this framing and size (created with the service's defaults
    but for the depths, or found from an earlier run); (name, its framing)."""
    if not framing:  # what a new user gets: ask the service by creating a probe collection
        probe = f"bench-probe-default-{uuid.uuid4().hex[:6]}"
        framing = client.create_collection(probe, depths=["semantics"]).framing
        client.delete_collection(probe)
    name = f"cifar-{framing}-{train_per_class}x{test_per_class}"
    if name not in {c.name for c in client.list_collections()}:
        client.create_collection(name, depths=list(DEPTHS), framing=framing)
    return name, framing


# -- measurements ---------------------------------------------------------------------


def accuracy(
    predicted: dict[int, str], truth: dict[int, str], ids: Iterator[int] | list[int]
) -> float:
    ids = list(ids)
    return float(np.mean([predicted.get(i) == truth[i] for i in ids])) if ids else float("nan")


def timed(what: str, call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = call()
    seconds = time.monotonic() - start
    say(f"{what}: {seconds:.1f}s")
    return result, seconds


def stored_vectors(server: LocalServer, collection: str) -> dict[str, dict[int, np.ndarray]]:
    """depth -> item id -> the stored vector, read from SQL in this process."""
    from indexer.store import repository

    ctx = server.running.ctx
    with ctx.sessions() as session:
        info = repository.get_collection(session, collection)
        return {
            depth.name: {
                int(i): v
                for ids, m in repository.iter_vectors(session, info.id, depth.name, depth.dim)
                for i, v in zip(ids, m, strict=True)
            }
            for depth in info.depths
        }


def plain_probe(
    vectors: dict[int, np.ndarray], train: list[int], targets: list[int], truth: dict[int, str]
) -> dict[int, str]:
    """scikit-learn LogisticRegression(C=0.1) on standardised vectors, as the README."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x_train = np.stack([vectors[i] for i in train])
    scaler = StandardScaler().fit(x_train)
    model = LogisticRegression(C=0.1, max_iter=1000)
    model.fit(scaler.transform(x_train), [truth[i] for i in train])
    predicted = model.predict(scaler.transform(np.stack([vectors[i] for i in targets])))
    return dict(zip(targets, predicted, strict=True))


def sklearn_baseline(
    server: LocalServer, collection: str, train: list[int], test: list[int], truth: dict[int, str]
) -> dict[str, float]:
    """The plain probe's test accuracy at every depth of the collection."""
    return {
        depth: accuracy(plain_probe(rows, train, test, truth), truth, test)
        for depth, rows in stored_vectors(server, collection).items()
    }


def predict(client: StrataClient, collection: str, depths: list[str]) -> tuple[Any, dict[int, str]]:
    result = client.predict_labels(collection, depths=depths, dry_run=True)
    return result, {p.id: p.label for p in result.predictions}


#: Labels per class added by `labels suggest` or at random after the first FEW.
MORE = (5, 10, 20)
#: The plain probe's depths (the README's stage 4 and pre-logits): the baseline is the
#: better of the two on each measure.
PLAIN_DEPTHS = ("blocks.6", "semantics")


def few_labels_round(
    client: StrataClient,
    collection: str,
    seed: int,
    train_by_class: dict[str, list[int]],
    truth: dict[int, str],
    test: list[int],
    depths: list[str],
    vectors: dict[str, dict[int, np.ndarray]],
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    few = {
        int(i): c for c, ids in train_by_class.items() for i in rng.choice(ids, FEW, replace=False)
    }
    rest = [i for i in truth if i not in few]
    client.clear_labels(collection)
    client.set_labels(collection, {i: c for i, c in few.items()})
    result, predicted = predict(client, collection, depths)
    row: dict[str, Any] = {
        "seed": seed,
        "method": result.method,
        "depth": result.depth,
        "cv_accuracy": result.cv_accuracy,
        "accuracy_rest": accuracy(predicted, truth, rest),
        "accuracy_test": accuracy(predicted, truth, test),
        "plain": {},
    }
    for depth in PLAIN_DEPTHS:
        plain = plain_probe(vectors[depth], list(few), rest, truth)
        row["plain"][depth] = {
            "accuracy_rest": accuracy(plain, truth, rest),
            "accuracy_test": accuracy(plain, truth, test),
        }
    row["plain_best_test"] = max(v["accuracy_test"] for v in row["plain"].values())
    row["plain_best_rest"] = max(v["accuracy_rest"] for v in row["plain"].values())
    pool = [i for ids in train_by_class.values() for i in ids if i not in few]
    for more in MORE:
        n_more = more * len(train_by_class)
        suggested = client.suggest_labels(
            collection, n_more, metadata={"split": "train"}, seed=seed
        )
        picks = [s.id for s in suggested.suggestions]
        random_picks = [int(i) for i in rng.choice(pool, n_more, replace=False)]
        for name, extra in (("suggest", picks), ("random", random_picks)):
            client.clear_labels(collection)
            client.set_labels(collection, {**few, **{i: truth[i] for i in extra}})
            result, predicted = predict(client, collection, depths)
            labelled = set(few) | set(extra)
            row[f"{name}+{more}"] = {
                "method": result.method,
                "depth": result.depth,
                "classes_covered": len({truth[i] for i in extra}),
                "accuracy_test": accuracy(predicted, truth, test),
                "accuracy_rest": accuracy(
                    predicted, truth, [i for i in truth if i not in labelled]
                ),
            }
        say(
            f"seed {seed} +{more}/class: suggest {row[f'suggest+{more}']['accuracy_test']:.3f}, "
            f"random {row[f'random+{more}']['accuracy_test']:.3f} on test"
        )
    say(
        f"seed {seed}: 10/class {row['accuracy_test']:.3f} on test ({result.method}); "
        f"plain probe {row['plain_best_test']:.3f}"
    )
    return row


def summarise_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str, sub: str = "") -> float:
        return float(np.mean([r[key][sub] if sub else r[key] for r in rounds]))

    out: dict[str, Any] = {
        "rounds": rounds,
        "seeds": len(rounds),
        "mean_accuracy_rest": mean("accuracy_rest"),
        "mean_accuracy_test": mean("accuracy_test"),
        "plain_mean_accuracy_rest": mean("plain_best_rest"),
        "plain_mean_accuracy_test": mean("plain_best_test"),
        "reference_10_per_class": REFERENCE_10_PER_CLASS,
    }
    out["gain_over_plain_test"] = out["mean_accuracy_test"] - out["plain_mean_accuracy_test"]
    out["gain_over_plain_rest"] = out["mean_accuracy_rest"] - out["plain_mean_accuracy_rest"]
    for more in MORE:
        for name in ("suggest", "random"):
            out[f"{name}+{more}_mean_accuracy_test"] = mean(f"{name}+{more}", "accuracy_test")
            out[f"{name}+{more}_mean_accuracy_rest"] = mean(f"{name}+{more}", "accuracy_rest")
        out[f"suggest_gain+{more}_test"] = (
            out[f"suggest+{more}_mean_accuracy_test"] - out[f"random+{more}_mean_accuracy_test"]
        )
        out[f"suggest_wins+{more}"] = sum(
            r[f"suggest+{more}"]["accuracy_test"] > r[f"random+{more}"]["accuracy_test"]
            for r in rounds
        )
    return out


def flipped_round(
    client: StrataClient,
    local: LocalServer,
    collection: str,
    train: list[int],
    truth: dict[int, str],
    classes: list[str],
    depths: list[str],
    share: float,
) -> dict[str, Any]:
    """Flip `share` of the train labels; rank suspects with cleanlab (the default) and the
    hand-written method on the same out-of-fold probabilities of the chosen predictor."""
    from indexer.catalog.collections import get_collection
    from indexer.learning import bootstrap, mislabels

    rng = np.random.default_rng(1234)
    client.clear_labels(collection)
    client.set_labels(collection, {i: truth[i] for i in train})
    flipped = [int(i) for i in rng.choice(train, round(share * len(train)), replace=False)]
    wrong = {}
    for i in flipped:
        others = [c for c in classes if c != truth[i]]
        wrong[i] = others[int(rng.integers(len(others)))]
    client.set_labels(collection, wrong)
    ctx = local.running.ctx
    found, seconds = timed(
        f"out-of-fold probabilities ({share:.0%} flipped)",
        lambda: bootstrap.out_of_fold(ctx, get_collection(ctx, collection), depths),
    )
    out: dict[str, Any] = {
        "share": share,
        "flipped": len(flipped),
        "method": found.choice.best.method,
        "depth": found.choice.best.depth,
        "cv_accuracy": found.choice.best.cv_accuracy,
        "seconds": seconds,
    }
    bad = set(flipped)
    for finder in (mislabels.CLEANLAB, mislabels.HAND_WRITTEN):
        flagged = mislabels.find_issues(found.y, found.probabilities, finder)
        ids = found.ids[flagged.rows].tolist()
        hits = len(set(ids) & bad)
        out[finder] = {
            "flagged": len(ids),
            "precision": hits / max(1, len(ids)),
            "recall": hits / len(flipped),
            "precision_at_flipped": len(set(ids[: len(flipped)]) & bad) / len(flipped),
        }
    # Ranking alone (no filter), for scale: the lowest out-of-fold P[given label] first.
    order = np.argsort(found.probabilities[np.arange(len(found.y)), found.y], kind="stable")
    top = found.ids[order[: len(flipped)]].tolist()
    out["self_confidence_top_k"] = len(set(top) & bad) / len(flipped)
    say(
        f"{share:.0%} flipped: top-k precision cleanlab "
        f"{out[mislabels.CLEANLAB]['precision_at_flipped']:.3f}, hand-written "
        f"{out[mislabels.HAND_WRITTEN]['precision_at_flipped']:.3f}"
    )
    return out


# -- main ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=None, help="use this server instead of starting one")
    parser.add_argument("--zip", type=Path, default=ZIP)
    parser.add_argument("--seeds", type=int, default=5, help="seeds for the 10-label rounds")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma list of what to measure (default all: {','.join(PARTS)})",
    )
    parser.add_argument(
        "--boot-depths",
        default="",
        help="comma list for predict/suggest/issues (default: every depth)",
    )
    parser.add_argument(
        "--framing",
        default="",
        help="the collection's framing (default: the service's default for new collections)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DATA,
        help="the local server's data folder, kept between runs so reruns do not re-embed",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS, help="smoke runs")
    parser.add_argument("--test-per-class", type=int, default=100, help="smoke runs")
    args = parser.parse_args()
    if not args.zip.exists():
        print(f"bench/probe.py: {args.zip} is missing; nothing to measure", file=sys.stderr)
        return 2

    items, classes = load_cifar(args.zip, args.train_per_class, args.test_per_class)
    local = None
    if args.server is None:
        args.data.mkdir(parents=True, exist_ok=True)
        local = LocalServer(args.data)
        address = local.address
    else:
        address = args.server
    figures: dict[str, Any] = {
        "dataset": str(args.zip),
        "train_per_class": args.train_per_class,
        "test_per_class": args.test_per_class,
        "framing": args.framing,
    }
    boot_depths = [d for d in args.boot_depths.split(",") if d]
    parts = {p for p in args.parts.split(",") if p}
    try:
        with StrataClient(address) as client:
            name, framing = cifar_collection(
                client, args.framing, args.train_per_class, args.test_per_class
            )
            figures["framing"] = framing
            images = [
                ImageToAdd(u, d, [c] if u.startswith("train/") else [], {"split": u.split("/")[0]})
                for u, c, d in items
            ]
            # Unchanged images (a rerun on the kept data folder) are not embedded again.
            results, seconds = timed(
                f"index {len(images)} images", lambda: list(client.add_images(name, images))
            )
            ids = {r.uri: r.id for r in results}
            failed = [r.uri for r in results if r.status == "failed"]
            if failed:
                raise SystemExit(f"{len(failed)} images failed to index, e.g. {failed[:3]}")
            figures["index_seconds"] = seconds
            truth = {ids[u]: c for u, c, _ in items}
            train = [ids[u] for u, _, _ in items if u.startswith("train/")]
            test = [ids[u] for u, _, _ in items if u.startswith("test/")]
            train_by_class = {c: [i for i in train if truth[i] == c] for c in classes}
            client.clear_labels(name)  # a kept collection holds the last run's labels
            client.set_labels(name, {i: truth[i] for i in train})

            # 0. framing candidates (photos, copies, CIFAR probes), in this process
            if "framing" in parts and local is not None:
                cifar = cifar_probe_per_framing(
                    client, local, items, args.train_per_class, args.test_per_class
                )
                distractors = [(u, d) for u, _, d in items if u.startswith("test/")]
                figures["framing_study"] = framing_study(local.running.ctx, cifar, distractors)

            # 1. probes per depth
            reports, seconds = (
                timed("probe every depth (5-fold)", lambda: client.probe(name, folds=5))
                if "probes" in parts
                else ([], 0.0)
            )
            figures["probe_seconds"] = seconds
            baseline = (
                sklearn_baseline(local, name, train, test, truth) if local and reports else {}
            )
            rows = []
            for r in reports:
                response = client.predict_probe(name, ids=test, depth=r.depth)
                predicted = {p.id: p.scores[0].label for p in response.predictions}
                rows.append(
                    {
                        "depth": r.depth,
                        "readme_tap": DEPTHS[r.depth],
                        "dim": r.dim,
                        "cv_accuracy": r.accuracy,
                        "macro_f1": r.macro_f1,
                        "c": r.c,
                        "test_accuracy": accuracy(predicted, truth, test),
                        "sklearn_c0.1_test_accuracy": baseline.get(r.depth),
                        "readme_reference": REFERENCE[r.depth],
                        "per_class_cv": {m.label: m.accuracy for m in r.per_class},
                    }
                )
            figures["probes"] = rows

            # 2. all train labels -> predicted labels of the test images
            if "predict" in parts:
                (result, predicted), seconds = timed(
                    "labels predict (all train labels)",
                    lambda: predict(client, name, boot_depths),
                )
                figures["predict_full"] = {
                    "method": result.method,
                    "depth": result.depth,
                    "cv_accuracy": result.cv_accuracy,
                    "accuracy_test": accuracy(predicted, truth, test),
                    "seconds": seconds,
                    "candidates": [
                        (c.method, c.depth, round(c.cv_accuracy, 4)) for c in result.candidates
                    ],
                }

            # 3. few labels against the plain probe, then suggest vs random
            vectors = stored_vectors(local, name) if local else {}
            if "few" in parts and local is not None:
                rounds = []
                for seed in range(args.seeds):
                    row, _ = timed(
                        f"10 labels/class round, seed {seed}",
                        lambda seed=seed: few_labels_round(  # type: ignore[misc]
                            client, name, seed, train_by_class, truth, test, boot_depths, vectors
                        ),
                    )
                    rounds.append(row)
                figures["few_labels"] = summarise_rounds(rounds)

            # 4. flipped labels: cleanlab against the hand-written method
            if "issues" in parts and local is not None:
                figures["issues"] = [
                    flipped_round(client, local, name, train, truth, classes, boot_depths, share)
                    for share in FLIP_SHARES
                ]

            # 5. duplicates
            if "duplicates" in parts:
                groups, seconds = timed("duplicates", lambda: client.duplicates(name))
                figures["duplicates"] = {
                    "depth": groups.depth,
                    "threshold": groups.threshold,
                    "groups": len(groups.groups),
                    "items": sum(len(g.members) for g in groups.groups),
                    "seconds": seconds,
                    "examples": [[m.uri for m in g.members] for g in groups.groups[:5]],
                }
    finally:
        if local is not None:
            local.stop()

    report(figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    print(f"\nfigures written to {args.out}")
    return 0


def report(f: dict[str, Any]) -> None:
    if "framing_study" in f:
        st = f["framing_study"]
        print(
            f"\nFraming candidates: ImageNet-head top-1/top-5 on {st['photos_classified']} "
            f"photos of known class (skimage, a proxy for ImageNet); {st['queries']} near-copy "
            f"queries of {st['copy_originals']} photos among them and "
            f"{st['copy_distractors']} CIFAR images"
        )
        print(
            "{:12} {:>9} {:>9} {:>12} {:>11} {:>9} {:>10} {:>10}".format(
                "framing",
                "photo@1",
                "photo@5",
                "copy rec@1",
                "copy cos",
                ">=0.90",
                "CIFAR st4",
                "CIFAR pre",
            )
        )
        for name, r in st["framings"].items():
            c = r["cifar_probe"]
            print(
                "{:12} {:>9.3f} {:>9.3f} {:>12.3f} {:>11.3f} {:>9.3f} {:>10} {:>10}".format(
                    name,
                    r["photo_top1"],
                    r["photo_top5"],
                    r["copy_recall_at_1"],
                    r["copy_mean_cosine"],
                    r["copy_share_above_0.9"],
                    f"{c.get('blocks.6', float('nan')):.3f}",
                    f"{c.get('semantics', float('nan')):.3f}",
                )
            )
            print(
                "             "
                + ", ".join(
                    f"{k} {v['recall_at_1']:.2f}/{v['mean_cosine']:.3f}"
                    for k, v in r["copy_per_kind"].items()
                )
            )
    print(f"\ncollection framing: {f['framing']}")
    if f.get("probes"):
        print(
            f"\nLinear probe per depth (CIFAR-10, {f['train_per_class']} train/class, 5-fold CV; "
            f"test = {f['test_per_class']}/class)"
        )
        header = (
            "depth",
            "README tap",
            "dim",
            "CV acc",
            "macroF1",
            "test acc",
            "sklearn",
            "README",
            "C",
        )
        print("{:10} {:11} {:>5} {:>7} {:>7} {:>8} {:>8} {:>7} {:>7}".format(*header))
        for r in f["probes"]:
            sk = r["sklearn_c0.1_test_accuracy"]
            cells = (
                r["depth"],
                r["readme_tap"],
                r["dim"],
                f"{r['cv_accuracy']:.3f}",
                f"{r['macro_f1']:.3f}",
                f"{r['test_accuracy']:.3f}",
                "-" if sk is None else f"{sk:.3f}",
                f"{r['readme_reference']:.2f}",
                f"{r['c']:.3g}",
            )
            print("{:10} {:11} {:>5} {:>7} {:>7} {:>8} {:>8} {:>7} {:>7}".format(*cells))
    if "predict_full" in f:
        p = f["predict_full"]
        print(
            f"\nlabels predict, all train labels: {p['method']} at {p['depth']} "
            f"(CV {p['cv_accuracy']:.3f}) -> test accuracy {p['accuracy_test']:.3f} "
            f"[{p['seconds']:.0f}s]"
        )
    if "few_labels" in f:
        few = f["few_labels"]
        print(
            f"\n10 labels/class ({few['seeds']} seeds): predicted labels on test "
            f"{few['mean_accuracy_test']:.3f}, on the rest {few['mean_accuracy_rest']:.3f}; "
            f"plain probe (sklearn C=0.1, better of {'/'.join(PLAIN_DEPTHS)}) "
            f"{few['plain_mean_accuracy_test']:.3f} / {few['plain_mean_accuracy_rest']:.3f}: "
            f"gain {few['gain_over_plain_test']:+.3f} / {few['gain_over_plain_rest']:+.3f}"
        )
        for r in few["rounds"]:
            more = " | ".join(
                f"+{m}: suggest {r[f'suggest+{m}']['accuracy_test']:.3f} "
                f"random {r[f'random+{m}']['accuracy_test']:.3f}"
                for m in MORE
            )
            print(
                f"  seed {r['seed']}: {r['method']}@{r['depth']} test {r['accuracy_test']:.3f} "
                f"(plain {r['plain_best_test']:.3f}) | {more}"
            )
        for m in MORE:
            print(
                f"  +{m}/class: suggest {few[f'suggest+{m}_mean_accuracy_test']:.3f}, random "
                f"{few[f'random+{m}_mean_accuracy_test']:.3f} on test (gain "
                f"{few[f'suggest_gain+{m}_test']:+.3f}, suggest won {few[f'suggest_wins+{m}']} "
                f"of {few['seeds']})"
            )
    for i in f.get("issues", []):
        print(
            f"\nlabels issues, {i['flipped']} labels flipped ({i['share']:.0%}), "
            f"{i['method']} at {i['depth']} (CV {i['cv_accuracy']:.3f}):"
        )
        for finder in ("cleanlab", "confident-learning"):
            r = i[finder]
            print(
                f"  {finder:19s} flagged {r['flagged']}, precision {r['precision']:.3f}, "
                f"recall {r['recall']:.3f}, top-{i['flipped']} precision "
                f"{r['precision_at_flipped']:.3f}"
            )
        print(f"  lowest P[label] first, no filter: top-k {i['self_confidence_top_k']:.3f}")
    if "duplicates" in f:
        d = f["duplicates"]
        print(
            f"\nduplicates at {d['depth']} >= {d['threshold']:.2f}: "
            f"{d['groups']} groups, {d['items']} items"
        )
    print(f"\nindexing {f['index_seconds']:.0f}s, probes {f['probe_seconds']:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
