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
3. 10 labels per class: predicted accuracy on the rest and on test; then 10 more per
   class chosen by `labels suggest` or at random (averaged over --seeds);
4. 5% of the train labels flipped: `labels issues` precision and recall;
5. `duplicates` at the default threshold.

Prints tables and writes bench/out/probe.json. Without --server it starts a server on a
temporary data folder (SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
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

from indexer.core.settings import Settings  # noqa: E402
from service.client import ImageToAdd, StrataClient  # noqa: E402
from service.server import RunningServer, create_server  # noqa: E402

ZIP = ROOT.parent / "shared" / "datasets" / "cifar10-small.zip"
OUT = ROOT / "bench" / "out" / "probe.json"
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
FLIP_SHARE = 0.05

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
        settings = Settings.load(data_dir=data_dir)
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


def sklearn_baseline(
    server: LocalServer, collection: str, train: list[int], test: list[int], truth: dict[int, str]
) -> dict[str, float]:
    """scikit-learn LogisticRegression(C=0.1) on standardised stored vectors, as the README."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from indexer.store import repository

    ctx = server.running.ctx
    out = {}
    with ctx.sessions() as session:
        info = repository.get_collection(session, collection)
        for depth in info.depths:
            rows = {
                int(i): v
                for ids, m in repository.iter_vectors(session, info.id, depth.name, depth.dim)
                for i, v in zip(ids, m, strict=True)
            }
            x_train = np.stack([rows[i] for i in train])
            x_test = np.stack([rows[i] for i in test])
            scaler = StandardScaler().fit(x_train)
            model = LogisticRegression(C=0.1, max_iter=1000)
            model.fit(scaler.transform(x_train), [truth[i] for i in train])
            predicted = model.predict(scaler.transform(x_test))
            out[depth.name] = float(
                np.mean([p == truth[i] for p, i in zip(predicted, test, strict=True)])
            )
    return out


def predict(client: StrataClient, collection: str, depths: list[str]) -> tuple[Any, dict[int, str]]:
    result = client.predict_labels(collection, depths=depths, dry_run=True)
    return result, {p.id: p.label for p in result.predictions}


def few_labels_round(
    client: StrataClient,
    collection: str,
    seed: int,
    train_by_class: dict[str, list[int]],
    truth: dict[int, str],
    test: list[int],
    depths: list[str],
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    few = {
        int(i): c for c, ids in train_by_class.items() for i in rng.choice(ids, FEW, replace=False)
    }
    client.clear_labels(collection)
    client.set_labels(collection, {i: c for i, c in few.items()})
    result, predicted = predict(client, collection, depths)
    rest = [i for i in truth if i not in few]
    row: dict[str, Any] = {
        "seed": seed,
        "method": result.method,
        "depth": result.depth,
        "cv_accuracy": result.cv_accuracy,
        "accuracy_rest": accuracy(predicted, truth, rest),
        "accuracy_test": accuracy(predicted, truth, test),
    }
    n_more = FEW * len(train_by_class)
    suggested = client.suggest_labels(collection, n_more, metadata={"split": "train"}, seed=seed)
    picks = [s.id for s in suggested.suggestions]
    pool = [i for ids in train_by_class.values() for i in ids if i not in few]
    random_picks = [int(i) for i in rng.choice(pool, n_more, replace=False)]
    for name, extra in (("suggest", picks), ("random", random_picks)):
        client.clear_labels(collection)
        client.set_labels(collection, {**few, **{i: truth[i] for i in extra}})
        result, predicted = predict(client, collection, depths)
        labelled = set(few) | set(extra)
        row[name] = {
            "method": result.method,
            "depth": result.depth,
            "classes_covered": len({truth[i] for i in extra}),
            "accuracy_test": accuracy(predicted, truth, test),
            "accuracy_rest": accuracy(predicted, truth, [i for i in truth if i not in labelled]),
        }
    say(
        f"seed {seed}: 10/class {row['accuracy_test']:.3f} on test; +suggest "
        f"{row['suggest']['accuracy_test']:.3f}, +random {row['random']['accuracy_test']:.3f}"
    )
    return row


def flipped_round(
    client: StrataClient,
    collection: str,
    train: list[int],
    truth: dict[int, str],
    classes: list[str],
    depths: list[str],
) -> dict[str, Any]:
    rng = np.random.default_rng(1234)
    client.clear_labels(collection)
    client.set_labels(collection, {i: truth[i] for i in train})
    flipped = [int(i) for i in rng.choice(train, round(FLIP_SHARE * len(train)), replace=False)]
    wrong = {}
    for i in flipped:
        others = [c for c in classes if c != truth[i]]
        wrong[i] = others[int(rng.integers(len(others)))]
    client.set_labels(collection, wrong)
    result, seconds = timed(
        "labels issues (5% flipped)", lambda: client.label_issues(collection, depths=depths)
    )
    found = [i.id for i in result.issues]
    hits = len(set(found) & set(flipped))
    top = found[: len(flipped)]
    return {
        "flipped": len(flipped),
        "flagged": len(found),
        "precision": hits / max(1, len(found)),
        "recall": hits / len(flipped),
        "precision_at_flipped": len(set(top) & set(flipped)) / len(flipped),
        "method": result.method,
        "depth": result.depth,
        "cv_accuracy": result.cv_accuracy,
        "seconds": seconds,
    }


# -- main ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=None, help="use this server instead of starting one")
    parser.add_argument("--zip", type=Path, default=ZIP)
    parser.add_argument("--seeds", type=int, default=3, help="seeds for the 10-label rounds")
    parser.add_argument(
        "--boot-depths",
        default="",
        help="comma list for predict/suggest/issues (default: every depth)",
    )
    parser.add_argument(
        "--framing",
        default="whole",
        help="the collection's framing: whole (default: CIFAR photos are 32 px thumbnails "
        "framed tightly, and the README's figures see them whole) or center-crop",
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
    tmp = tempfile.TemporaryDirectory(prefix="strata-bench-probe-")
    if args.server is None:
        local = LocalServer(Path(tmp.name))
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
    try:
        with StrataClient(address) as client:
            name = f"bench-probe-{uuid.uuid4().hex[:6]}"
            client.create_collection(name, depths=list(DEPTHS), framing=args.framing)
            images = [
                ImageToAdd(u, d, [c] if u.startswith("train/") else [], {"split": u.split("/")[0]})
                for u, c, d in items
            ]
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

            # 1. probes per depth
            reports, seconds = timed(
                "probe every depth (5-fold)", lambda: client.probe(name, folds=5)
            )
            figures["probe_seconds"] = seconds
            baseline = sklearn_baseline(local, name, train, test, truth) if local else {}
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
            (result, predicted), seconds = timed(
                "labels predict (all train labels)", lambda: predict(client, name, boot_depths)
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

            # 3. few labels, then suggest vs random
            rounds = []
            for seed in range(args.seeds):
                row, _ = timed(
                    f"10 labels/class round, seed {seed}",
                    lambda seed=seed: few_labels_round(
                        client, name, seed, train_by_class, truth, test, boot_depths
                    ),
                )
                rounds.append(row)
            figures["few_labels"] = {
                "rounds": rounds,
                "mean_accuracy_rest": float(np.mean([r["accuracy_rest"] for r in rounds])),
                "mean_accuracy_test": float(np.mean([r["accuracy_test"] for r in rounds])),
                "suggest_mean_accuracy_test": float(
                    np.mean([r["suggest"]["accuracy_test"] for r in rounds])
                ),
                "random_mean_accuracy_test": float(
                    np.mean([r["random"]["accuracy_test"] for r in rounds])
                ),
                "suggest_mean_accuracy_rest": float(
                    np.mean([r["suggest"]["accuracy_rest"] for r in rounds])
                ),
                "random_mean_accuracy_rest": float(
                    np.mean([r["random"]["accuracy_rest"] for r in rounds])
                ),
                "reference_10_per_class": REFERENCE_10_PER_CLASS,
            }

            # 4. flipped labels
            figures["issues"] = flipped_round(client, name, train, truth, classes, boot_depths)

            # 5. duplicates
            groups, seconds = timed("duplicates", lambda: client.duplicates(name))
            figures["duplicates"] = {
                "depth": groups.depth,
                "threshold": groups.threshold,
                "groups": len(groups.groups),
                "items": sum(len(g.members) for g in groups.groups),
                "seconds": seconds,
                "examples": [[m.uri for m in g.members] for g in groups.groups[:5]],
            }
            client.delete_collection(name)
    finally:
        if local is not None:
            local.stop()
        tmp.cleanup()

    report(figures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    print(f"\nfigures written to {args.out}")
    return 0


def report(f: dict[str, Any]) -> None:
    print(
        f"\nLinear probe per depth (CIFAR-10, {f['train_per_class']} train/class, 5-fold CV; "
        f"test = {f['test_per_class']}/class; {f['framing']} framing)"
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
    p = f["predict_full"]
    print(
        f"\nlabels predict, all train labels: {p['method']} at {p['depth']} "
        f"(CV {p['cv_accuracy']:.3f}) -> test accuracy {p['accuracy_test']:.3f} "
        f"[{p['seconds']:.0f}s]"
    )
    few = f["few_labels"]
    print(
        f"\n10 labels/class ({len(few['rounds'])} seeds): predicted accuracy on the rest "
        f"{few['mean_accuracy_rest']:.3f}, on test {few['mean_accuracy_test']:.3f} "
        f"(README reference {few['reference_10_per_class']:.2f})"
    )
    for r in few["rounds"]:
        print(
            f"  seed {r['seed']}: {r['method']}@{r['depth']} rest {r['accuracy_rest']:.3f} "
            f"test {r['accuracy_test']:.3f} | +10/class suggest "
            f"{r['suggest']['accuracy_test']:.3f} random {r['random']['accuracy_test']:.3f}"
        )
    print(
        f"  +10/class by suggest: test {few['suggest_mean_accuracy_test']:.3f}, "
        f"rest {few['suggest_mean_accuracy_rest']:.3f}"
    )
    print(
        f"  +10/class at random:  test {few['random_mean_accuracy_test']:.3f}, "
        f"rest {few['random_mean_accuracy_rest']:.3f}"
    )
    i = f["issues"]
    print(
        f"\nlabels issues, {i['flipped']} labels flipped: flagged {i['flagged']}, "
        f"precision {i['precision']:.3f}, recall {i['recall']:.3f}; precision of the top "
        f"{i['flipped']}: {i['precision_at_flipped']:.3f} ({i['method']} at {i['depth']})"
    )
    d = f["duplicates"]
    print(
        f"\nduplicates at {d['depth']} >= {d['threshold']:.2f}: "
        f"{d['groups']} groups, {d['items']} items"
    )
    print(f"\nindexing {f['index_seconds']:.0f}s, probes {f['probe_seconds']:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
