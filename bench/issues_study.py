"""Which labels look wrong, offline: cleanlab's filters against each other and against the
hand-written method, on the CIFAR collection that bench/probe.py keeps in
bench/out/probe-data/ (run it once first), over several draws of flipped labels.

    python bench/issues_study.py [--seeds 3] [--shares 0.05,0.2]

Per seed and share: every train label given (300 a class), `share` of them flipped to
another class at random (seeded; bench/probe.py flips one fixed draw), every candidate of
`labels predict` cross-validated on those labels and the one-standard-error ensemble's
out-of-fold probabilities taken, as `labels issues` does. On the same probabilities:

- `prune_by_noise_rate` (cleanlab's default filter), `low_self_confidence`,
  `low_normalized_margin`, `both`, `confident_learning`: `cleanlab.filter.find_label_issues`
  with that `filter_by`, ranked by self-confidence (the two `low_*` filters flag the items
  with the lowest score, as many as `cleanlab.count.num_label_issues` estimates);
- `hand-written`: the confident-learning count that cleanlab replaced.

Each gives the flagged count, precision and recall of the flagged set, and the top-k
precision (k = the number flipped) that issue 14 sets its target on.
Writes bench/out/issues-study.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from choice_study import COLLECTION, DATA, Collection, cross_validated  # noqa: E402

from indexer.catalog.context import Context  # noqa: E402
from indexer.learning import choosing, mislabels  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402

OUT = ROOT / "bench" / "out" / "issues-study.json"
FILTERS = (
    "prune_by_noise_rate",
    "low_self_confidence",
    "low_normalized_margin",
    "both",
    "confident_learning",
)


def flipped_labels(truth: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`truth` with `share` of it moved to another class at random; and which rows moved."""
    rng = np.random.default_rng(seed)
    n_classes = int(truth.max()) + 1
    rows = rng.choice(len(truth), round(share * len(truth)), replace=False)
    given = truth.copy()
    given[rows] = (truth[rows] + rng.integers(1, n_classes, len(rows))) % n_classes
    return given, rows


def scores(rows: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    bad = set(flipped.tolist())
    hits = len(bad.intersection(rows.tolist()))
    return {
        "flagged": float(len(rows)),
        "precision": hits / max(1, len(rows)),
        "recall": hits / len(flipped),
        "top_k_precision": len(bad.intersection(rows[: len(flipped)].tolist())) / len(flipped),
    }


def one_draw(ctx: Context, c: Collection, share: float, seed: int) -> dict[str, Any]:
    from cleanlab.filter import find_label_issues

    train = c.split.train
    given, moved = flipped_labels(c.split.truth[train], share, seed)
    fitted = cross_validated(ctx, c, train, seed, given)
    best = choosing._ensemble(fitted) or max(fitted, key=lambda f: f.candidate.cv_accuracy)
    labelled = best.data.labelled[best.tested]  # positions into the collection
    y = best.data.y[labelled]
    p = best.out_of_fold[best.tested]
    # Rows of y are in collection order; `moved` indexes `train`, so map it the same way.
    flipped = np.flatnonzero(np.isin(labelled, train[moved]))
    out: dict[str, Any] = {"share": share, "seed": seed, "flipped": len(flipped)}
    for filter_by in FILTERS:
        rows = find_label_issues(
            labels=y,
            pred_probs=p,
            filter_by=filter_by,
            return_indices_ranked_by="self_confidence",
            n_jobs=1,
        )
        out[filter_by] = scores(np.asarray(rows), flipped)
    out["hand-written"] = scores(mislabels.hand_written_issues(y, p).rows, flipped)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--collection", default=COLLECTION)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shares", default="0.05,0.2")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    ctx = Context.open(ServiceSettings.load(data_dir=args.data))
    draws = []
    start = time.monotonic()
    try:
        collection = Collection(ctx, args.collection)
        for share in (float(s) for s in args.shares.split(",") if s):
            for seed in range(args.seeds):
                draws.append(one_draw(ctx, collection, share, seed))
                top = {
                    k: round(v["top_k_precision"], 3)
                    for k, v in draws[-1].items()
                    if isinstance(v, dict)
                }
                print(
                    f"[{time.monotonic() - start:6.0f}s] {share:.0%} flipped, seed {seed}: "
                    f"top-k {top}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        ctx.close()
    for share in sorted({d["share"] for d in draws}):
        mine = [d for d in draws if d["share"] == share]
        print(f"\n{share:.0%} flipped, {len(mine)} draws (means):")
        for finder in (*FILTERS, "hand-written"):
            m = {key: np.mean([d[finder][key] for d in mine]) for key in mine[0][finder]}
            print(
                f"  {finder:22s} flagged {m['flagged']:6.0f}  precision {m['precision']:.3f}  "
                f"recall {m['recall']:.3f}  top-k precision {m['top_k_precision']:.3f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"draws": draws}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
