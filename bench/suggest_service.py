"""What to label next, as the service does it: `labels suggest` (the library's
`suggest_labels`) against random picks on the CIFAR collection that bench/probe.py keeps in
bench/out/probe-data/ (run it once first), each labelled set scored as `labels predict`
would label the test images.

    python bench/suggest_service.py [--seeds 3] [--more 10]

Per seed: 10 human labels a class drawn at random from the train images (as bench/probe.py
and bench/suggest_study.py), written to the collection; then `--more` labels a class, once
chosen by `suggest_labels` among the other train images and once at random (two draws);
each set is scored by the service's own choice (every candidate cross-validated on the
labels, the one-standard-error ensemble fitted on all of them) on the test images. Unlike
bench/probe.py it runs in this process, without gRPC, and it leaves the collection's labels
as the last seed set them. Writes bench/out/suggest-service.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from choice_study import Collection, cross_validated  # noqa: E402

from indexer.catalog.context import Context  # noqa: E402
from indexer.learning import bootstrap, choosing, labels  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402

DATA = ROOT / "bench" / "out" / "probe-data"
OUT = ROOT / "bench" / "out" / "suggest-service.json"
COLLECTION = "cifar-auto-300x100"
FEW = 10
CHOICES = ("suggest", "random", "random2")


def predicted_accuracy(ctx: Context, c: Collection, labelled: np.ndarray, seed: int) -> float:
    """Test accuracy of what `labels predict` answers from the human labels at `labelled`."""
    fitted = cross_validated(ctx, c, labelled, seed)
    best = choosing._ensemble(fitted) or max(fitted, key=lambda f: f.candidate.cv_accuracy)
    p = choosing.fit_predict(ctx, best, c.split.test, seed)
    return float((p.argmax(axis=1) == c.split.truth[c.split.test]).mean())


def one_seed(ctx: Context, c: Collection, seed: int, more: int) -> dict[str, float]:
    split = c.split
    ids = c.depths[0].ids
    few = split.few(FEW, seed)
    labels.clear_labels(ctx, c.info.name, None)
    labels.set_labels(ctx, c.info.name, {int(ids[p]): [split.classes[split.truth[p]]] for p in few})
    n = more * len(split.classes)
    position = {int(i): p for p, i in enumerate(ids)}
    suggested = bootstrap.suggest_labels(
        ctx, c.info.name, n, metadata={"split": "train"}, seed=seed
    )
    rng = np.random.default_rng(seed + 7)
    pool = np.setdiff1d(split.train, few)
    picks = {
        "suggest": np.array([position[s.id] for s in suggested.suggestions]),
        "random": rng.choice(pool, n, replace=False),
        "random2": rng.choice(pool, n, replace=False),
    }
    return {
        name: predicted_accuracy(ctx, c, np.concatenate([few, picks[name]]), seed)
        for name in CHOICES
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--collection", default=COLLECTION)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--more", type=int, default=10, help="labels a class to add")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    ctx = Context.open(ServiceSettings.load(data_dir=args.data))
    rows: dict[str, list[float]] = {name: [] for name in CHOICES}
    start = time.monotonic()
    try:
        collection = Collection(ctx, args.collection)
        for seed in range(args.seeds):
            row = one_seed(ctx, collection, seed, args.more)
            for name, value in row.items():
                rows[name].append(value)
            print(f"[{time.monotonic() - start:6.0f}s] seed {seed}: {row}", file=sys.stderr)
    finally:
        ctx.close()
    print(f"\n{FEW} random labels a class + {args.more} a class, test accuracy of the prediction")
    for name, values in rows.items():
        print(f"  {name:8s} mean {np.mean(values):.3f}  per seed {np.round(values, 3)}")
    gain = np.mean(rows["suggest"]) - np.mean([rows["random"], rows["random2"]])
    print(f"  suggest - mean of the random draws: {gain:+.3f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"more": args.more, "rows": rows, "gain": gain}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
