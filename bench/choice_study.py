"""How `labels predict` turns its cross-validated candidates into one answer, offline, on
the CIFAR collection that bench/probe.py keeps in bench/out/probe-data/ (run it once first).

    python bench/choice_study.py [--seeds 5] [--per-class 10]

Per seed: `--per-class` human labels a class drawn at random from the train images (as
bench/probe.py), every candidate of `indexer.learning.choosing` cross-validated on them
(probe, self-training, kNN and propagation at every depth, the probe and self-training on
the two best depths' features combined; 5 folds), each candidate then fitted on every
label and scored on the test images. The rules compared:

- `best by CV`: the single candidate with the highest CV accuracy, where the candidates
  include the earlier `ensemble` (the best predictor at each of the two best depths,
  averaged): the default before the one-standard-error rule;
- `one-SE ensemble`: the mean of every candidate within one standard error of the best
  (`choosing._ensemble`, the default now);
- `top 3`, `top 5`: the mean of the 3 or 5 best by CV (fixed sizes, for comparison);
- `oracle`: the candidate best on the test images (reads the true labels: a ceiling).

Writes bench/out/choice-study.json.
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

from common import CifarSplit  # noqa: E402

from indexer.catalog.collections import get_collection  # noqa: E402
from indexer.catalog.context import Context  # noqa: E402
from indexer.learning import choosing, labelled_vectors  # noqa: E402
from indexer.learning.choosing import Fitted  # noqa: E402
from indexer.learning.labelled_vectors import UNLABELLED, LabelledVectors  # noqa: E402
from indexer.learning.predictors import METHODS  # noqa: E402
from indexer.store import label_repository  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402

DATA = ROOT / "bench" / "out" / "probe-data"
OUT = ROOT / "bench" / "out" / "choice-study.json"
COLLECTION = "cifar-auto-300x100"
FOLDS = 5


def two_depth_ensemble(fitted: list[Fitted]) -> Fitted:
    """The ensemble before the one-standard-error rule: the best predictor at each of the
    two best depths, averaged."""
    best_per_depth: dict[str, Fitted] = {}
    for f in sorted(fitted, key=lambda f: -f.candidate.cv_accuracy):
        best_per_depth.setdefault(f.candidate.depth, f)
    return choosing.mean_of(tuple(best_per_depth.values())[:2])


class Collection:
    """The collection's vectors at every depth, read once, and its CIFAR split."""

    def __init__(self, ctx: Context, name: str):
        self.info = get_collection(ctx, name)
        self.depths = [labelled_vectors.load(ctx, self.info, spec) for spec in self.info.depths]
        ids = self.depths[0].ids
        with ctx.sessions() as session:
            self.split = CifarSplit.of(
                label_repository.item_uris(session, self.info.id, ids.tolist()), ids
            )


def cross_validated(
    ctx: Context, c: Collection, labelled: np.ndarray, seed: int, given: np.ndarray | None = None
) -> list[Fitted]:
    """Every candidate of `labels predict`, cross-validated on the classes `given` to the
    items at positions `labelled` (default: their true classes; the rest unlabelled), as
    `choosing.choose` does."""
    split = c.split
    y = np.full(len(split.truth), UNLABELLED)
    y[labelled] = split.truth[labelled] if given is None else given
    fitted: list[Fitted] = []
    for spec, loaded in zip(c.info.depths, c.depths, strict=True):
        data = LabelledVectors(loaded.ids, loaded.x, y, split.classes)
        graph = choosing.graph_of(ctx, c.info, spec, data)
        fitted += choosing._cross_validate(
            ctx, data, graph, METHODS, spec.name, FOLDS, seed, "study"
        )
    fitted += choosing._combined(ctx, fitted, choosing.COMBINED_METHODS, FOLDS, seed, "study")
    return fitted


def one_seed(ctx: Context, c: Collection, per_class: int, seed: int) -> dict[str, float]:
    split = c.split
    fitted = cross_validated(ctx, c, split.few(per_class, seed), seed)
    old = [*fitted, two_depth_ensemble(fitted)]
    ranked = sorted(fitted, key=lambda f: -f.candidate.cv_accuracy)
    on_test: dict[int, np.ndarray] = {}

    def test_accuracy(f: Fitted) -> float:
        parts = f.members or (f,)
        for m in parts:
            if id(m) not in on_test:
                on_test[id(m)] = choosing.fit_predict(ctx, m, split.test, seed)
        p = np.mean([on_test[id(m)] for m in parts], axis=0)
        return float((p.argmax(axis=1) == split.truth[split.test]).mean())

    ensemble = choosing._ensemble(fitted)
    return {
        "best by CV": test_accuracy(max(old, key=lambda f: f.candidate.cv_accuracy)),
        "one-SE ensemble": test_accuracy(ensemble or ranked[0]),
        "one-SE members": float(len(ensemble.members) if ensemble else 1),
        "top 3": test_accuracy(choosing.mean_of(tuple(ranked[:3]))),
        "top 5": test_accuracy(choosing.mean_of(tuple(ranked[:5]))),
        "oracle": max(test_accuracy(f) for f in fitted),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--collection", default=COLLECTION)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=10, help="human labels a class")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    ctx = Context.open(ServiceSettings.load(data_dir=args.data))
    rows: dict[str, list[float]] = {}
    start = time.monotonic()
    try:
        collection = Collection(ctx, args.collection)
        for seed in range(args.seeds):
            row = one_seed(ctx, collection, args.per_class, seed)
            for key, value in row.items():
                rows.setdefault(key, []).append(value)
            print(f"[{time.monotonic() - start:6.0f}s] seed {seed}: {row}", file=sys.stderr)
    finally:
        ctx.close()
    print(f"\n{args.per_class} labels a class, test accuracy, {args.seeds} seeds")
    for key, values in rows.items():
        print(f"  {key:18s} mean {np.mean(values):.4f}  per seed {np.round(values, 3)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"per_class": args.per_class, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
