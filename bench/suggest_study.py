"""What to label next, offline: selection strategies against random picks on the CIFAR
collection that bench/probe.py keeps in bench/out/probe-data/ (run it once first).

    python bench/suggest_study.py [--seeds 3] [--more 10] [--strategies random,coverage,...]

Per seed: 10 human labels a class drawn at random from the train images (as bench/probe.py),
then `--more` labels a class picked among the other train images by each strategy; the
score is the test accuracy of one fixed predictor (the library's self-training on stage 4
and pre-logits combined, the candidate CV picks most often at these budgets) learning from
the 10 + more labels. The strategies:

- `random`, `random2`: two independent random draws (their difference is the noise);
- `coverage`: `labels suggest`'s default (indexer/learning/selection.py), uncertainty-
  weighted coverage of the 10-NN graph with a per-class quota;
- `coverage-semantics-graph`, `coverage-stage4-graph`: the same, but covering the graph of
  one depth's own vectors (pre-logits or stage 4, unit length, exact) rather than of the
  combined features: the graph suggest's coverage used before 2026-12-04 was the
  pre-logits' whenever the chosen ensemble's first member worked there;
- `typiclust`: TypiClust (Hacohen et al. 2022): k-means with k = labelled + budget, the most
  typical point (inverse mean distance to its 20 nearest cluster mates) of the largest
  clusters without a label;
- `cluster-margin`: the 5 x budget least-margin items, k-means into `budget` clusters, the
  least-margin item of each (Citovsky et al. 2021);
- `weighted-kmeans`: the 10 x budget least-margin items, k-means weighted by uncertainty,
  the item nearest each centre (Zhdanov 2019);
- `herding`, `uncertainty-herding`: greedy facility location (kernel herding, as
  MaxHerding / UHerding, Bae et al. 2024) with a Gaussian kernel on the combined features
  (sigma 0.3), the second weighting each item by its uncertainty as `coverage` does, both
  with the per-class quota: a soft coverage with no ball size to choose;
- `balanced-random`: random picks, the same number from each predicted class;
- `eer`, `eer-quota`: expected error reduction over the harmonic function on the combined
  features' graph (Zhu, Lafferty and Ghahramani 2003), greedily with a Schur downdate of
  the Green's function after each pick; the second with the per-class quota;
- `oracle-wrong`, `oracle-confident-wrong` (diagnostics, they read the true labels): random
  picks among the items the 10-label predictor gets wrong, and the most confident of them;
- `oracle-balanced` (diagnostic): random picks, `--more` from each true class.

`--random-draws N` measures instead how far picks alone can move the score: N independent
random draws of `--more` labels a class per seed, their mean, spread and best, and how many
beat their mean by 0.03 (the issue's bar for `labels suggest`).

Writes bench/out/suggest-study.json (with `--random-draws`, suggest-spread.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import CifarSplit  # noqa: E402

from indexer.catalog.collections import get_collection  # noqa: E402
from indexer.catalog.context import Context  # noqa: E402
from indexer.learning import labelled_vectors, predictors  # noqa: E402
from indexer.learning.choosing import centred  # noqa: E402
from indexer.learning.labelled_vectors import UNLABELLED, LabelledVectors  # noqa: E402
from indexer.learning.neighbours import exact_graph  # noqa: E402
from indexer.learning.selection import MIN_WEIGHT, weighted_coverage  # noqa: E402
from indexer.store import label_repository  # noqa: E402
from service.settings import ServiceSettings  # noqa: E402

DATA = ROOT / "bench" / "out" / "probe-data"
OUT = ROOT / "bench" / "out" / "suggest-study.json"
COLLECTION = "cifar-auto-300x100"
FEW = 10
DEVICE = torch.device("cpu")
STRATEGIES = (
    "random",
    "random2",
    "coverage",
    "coverage-semantics-graph",
    "coverage-stage4-graph",
    "typiclust",
    "cluster-margin",
    "weighted-kmeans",
    "herding",
    "uncertainty-herding",
    "balanced-random",
    "eer",
    "eer-quota",
    "oracle-wrong",
    "oracle-confident-wrong",
    "oracle-balanced",
)
#: The Gaussian kernel's width for herding, on unit combined features (an item's nearest
#: neighbour lies at distance ~1 there, its 20th at ~1.1).
HERDING_SIGMA = 0.3


class Study:
    """The collection's combined stage 4 + pre-logits features, true classes and splits."""

    def __init__(self, data_dir: Path, collection: str):
        ctx = Context.open(ServiceSettings.load(data_dir=data_dir))
        try:
            info = get_collection(ctx, collection)
            depths = [
                labelled_vectors.load(ctx, info, info.depth(d)) for d in ("blocks.6", "semantics")
            ]
            with ctx.sessions() as session:
                uris = label_repository.item_uris(session, info.id, depths[0].ids.tolist())
        finally:
            ctx.close()
        #: Each depth's own unit vectors, for the one-depth graphs.
        self.own = {
            name: d.x / np.linalg.norm(d.x, axis=1, keepdims=True)
            for name, d in zip(("blocks.6", "semantics"), depths, strict=True)
        }
        x = np.concatenate([centred(d.x) for d in depths], axis=1)
        self.x = np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), np.float32)
        self.ids = depths[0].ids
        self.split = CifarSplit.of(uris, self.ids)
        self.classes, self.y = self.split.classes, self.split.truth
        self.train, self.test = self.split.train, self.split.test
        self.graph = exact_graph(self.x, DEVICE)

    def few(self, seed: int) -> np.ndarray:
        return self.split.few(FEW, seed)

    def probabilities(self, labelled: np.ndarray, targets: np.ndarray, seed: int) -> np.ndarray:
        y = np.full(len(self.y), UNLABELLED)
        y[labelled] = self.y[labelled]
        data = LabelledVectors(self.ids, self.x, y, self.classes)
        method = "self-training"
        return predictors.predict([method], data, None, labelled, targets, DEVICE, seed)[method]

    def accuracy(self, labelled: np.ndarray, seed: int) -> float:
        p = self.probabilities(labelled, self.test, seed)
        return float((p.argmax(axis=1) == self.y[self.test]).mean())


def kmeans(x: np.ndarray, k: int, seed: int, weights: np.ndarray | None = None) -> Any:
    km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed + 1, min_points_per_centroid=1)
    km.train(x, weights=weights)
    return km


def typiclust(s: Study, labelled: np.ndarray, candidates: np.ndarray, n: int, seed: int) -> Any:
    k = len(labelled) + n
    assign = kmeans(s.x, k, seed).index.search(s.x, 1)[1][:, 0]
    open_ = np.zeros(len(s.x), bool)
    open_[candidates] = True
    labels = np.bincount(assign[labelled], minlength=k).astype(float)
    size = np.bincount(assign, minlength=k)
    picks: list[int] = []
    while len(picks) < n:
        c = int(np.lexsort((-size, labels))[0])
        members = np.flatnonzero(assign == c)
        mine = members[open_[members]]
        if len(mine) == 0:
            labels[c] = np.inf
            continue
        xm = s.x[members]
        distance = np.sqrt(np.clip(2 - 2 * xm @ xm.T, 0, None))
        np.fill_diagonal(distance, np.inf)
        near = np.sort(distance, axis=1)[:, : max(1, min(20, len(members) - 1))]
        typical = 1.0 / (near.mean(axis=1) + 1e-8)
        pick = int(mine[np.argmax(typical[open_[members]])])
        picks.append(pick)
        open_[pick] = False
        labels[c] += 1
    return np.array(picks)


_margins: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}


def margins(s: Study, labelled: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """1 - margin of the 10-label predictor for every item, and its predicted class."""
    key = (seed, *labelled.tolist())
    if key not in _margins:
        p = s.probabilities(labelled, np.arange(len(s.x)), seed)
        top2 = -np.sort(-p, axis=1)[:, :2]
        _margins[key] = (1.0 - (top2[:, 0] - top2[:, 1]), p.argmax(axis=1))
    weight, predicted = _margins[key]
    return weight.copy(), predicted


def herding(
    x: np.ndarray,
    labelled: np.ndarray,
    candidates: np.ndarray,
    n: int,
    weight: np.ndarray,
    group: np.ndarray,
) -> np.ndarray:
    """Greedy weighted facility location: each pick adds the most weighted kernel similarity
    not yet held by a labelled item or an earlier pick, at most ceil(n / groups) a group."""

    def gaussian(others: np.ndarray) -> np.ndarray:  # unit rows: |a - b|^2 = 2 - 2 a.b
        return np.exp(-(2.0 - 2.0 * x @ x[others].T) / (2.0 * HERDING_SIGMA**2))

    kernel = gaussian(candidates).astype(np.float32)  # (items, candidates)
    held = gaussian(labelled).max(axis=1)
    quota = -(-n // (int(group.max()) + 1))
    taken = np.zeros(int(group.max()) + 1, np.int64)
    open_ = np.ones(len(candidates), bool)
    picks = []
    for _ in range(n):
        gain = (weight[:, None] * np.maximum(kernel - held[:, None], 0.0)).sum(axis=0)
        allowed = open_ & (taken[group] < quota)
        best = int(np.argmax(np.where(allowed if allowed.any() else open_, gain, -1.0)))
        picks.append(candidates[best])
        open_[best] = False
        taken[group[best]] += 1
        held = np.maximum(held, kernel[:, best])
    return np.array(picks)


def harmonic_picks(
    graph: Any,
    labelled: np.ndarray,
    label_of: np.ndarray,
    n_classes: int,
    candidates: np.ndarray,
    n: int,
    quota_group: np.ndarray | None = None,
) -> np.ndarray:
    """Expected error reduction over the harmonic function (Zhu, Lafferty and Ghahramani
    2003): greedily the candidate whose label, drawn from its own harmonic estimate, most
    lowers the summed risk 1 - max_c q_i(c) of the unlabelled items; after each pick the
    Green's function loses that row and column (a Schur downdate), so the next pick sees
    what this one already settles."""
    from scipy import sparse

    if n > len(candidates):
        raise ValueError(f"{n} picks asked of {len(candidates)} candidates")
    size = len(graph.neighbours)
    rows = np.repeat(np.arange(size), graph.neighbours.shape[1])
    cols = graph.neighbours.reshape(-1)
    sims = graph.similarities.reshape(-1).astype(np.float64)
    keep = cols >= 0
    rows, cols, sims = rows[keep], cols[keep], sims[keep]
    distance2 = np.clip(2.0 - 2.0 * sims, 0.0, None)
    sigma2 = float(np.mean(distance2))
    w = sparse.csr_matrix((np.exp(-distance2 / sigma2), (rows, cols)), shape=(size, size))
    w = w.maximum(w.T).tocsr()
    degree = np.asarray(w.sum(axis=1)).ravel()
    unl = np.ones(size, bool)
    unl[labelled] = False
    u = np.flatnonzero(unl)
    lap = (sparse.diags(degree) - w).tocsr()
    reg = 1e-3 * float(degree.mean())
    g = np.linalg.inv(lap[u][:, u].toarray() + reg * np.eye(len(u)))  # dense: U x U only
    y = np.zeros((len(labelled), n_classes))
    y[np.arange(len(labelled)), label_of[labelled]] = 1.0
    f = g @ (w[u][:, labelled] @ y)
    f = f / np.maximum(f.sum(axis=0, keepdims=True), 1e-12)  # class mass normalisation
    q = f / np.maximum(f.sum(axis=1, keepdims=True), 1e-12)
    risk = 1.0 - q.max(axis=1)
    cand = np.searchsorted(u, candidates)  # each candidate's row among the unlabelled
    live = np.ones(len(u), bool)  # unlabelled and not picked
    open_ = np.ones(len(cand), bool)
    groups = int(quota_group.max()) + 1 if quota_group is not None else 1
    quota = -(-n // groups)
    taken = np.zeros(groups, np.int64)
    eye = np.eye(n_classes)
    near = min(128, len(u) - 1)
    picks: list[int] = []
    for _ in range(n):
        gain = np.full(len(cand), np.inf)
        allowed = open_.copy()
        if quota_group is not None:
            allowed &= taken[quota_group] < quota
            if not allowed.any():
                allowed = open_.copy()
        todo = np.flatnonzero(allowed)
        for start in range(0, len(todo), 256):
            part = todo[start : start + 256]
            ks = cand[part]
            col = g[:, ks].T * live[None, :]  # (K, U)
            col[np.arange(len(ks)), ks] = 0.0  # k itself: its own risk, counted once below
            top = np.argpartition(-col, near, axis=1)[:, :near]  # (K, M)
            frac = np.take_along_axis(col, top, axis=1) / g[ks, ks][:, None]  # (K, M)
            fm = q[top]  # (K, M, C)
            delta = eye[None, :, :] - q[ks][:, None, :]  # (K, Y, C)
            after = fm[:, None, :, :] + frac[:, None, :, None] * delta[:, :, None, :]
            after = np.clip(after, 0.0, None)
            r_after = 1.0 - after.max(axis=3) / np.maximum(after.sum(axis=3), 1e-12)
            change = (r_after - risk[top][:, None, :]).sum(axis=2)  # (K, Y)
            expected = (q[ks] * change).sum(axis=1) - risk[ks]
            gain[part] = expected
        best = int(np.argmin(gain))
        k = cand[best]
        picks.append(int(candidates[best]))
        open_[best] = False
        if quota_group is not None:
            taken[quota_group[best]] += 1
        live[k] = False
        risk[k] = 0.0
        gk = g[:, k].copy()
        g -= np.outer(gk, gk) / gk[k]
    return np.array(picks)


def per_class(
    rng: np.random.Generator, candidates: np.ndarray, classes_of: np.ndarray, n: int, k: int
) -> np.ndarray:
    """n // k random picks from each of the k classes `classes_of` gives the candidates."""
    return np.concatenate(
        [rng.choice(candidates[classes_of == c], n // k, replace=False) for c in range(k)]
    )


def random_spread(s: Study, seeds: int, more: int, draws: int, out: Path) -> None:
    """How much `more` labels a class picked at random move the score, draw to draw."""
    rows = []
    for seed in range(seeds):
        labelled = s.few(seed)
        candidates = np.setdiff1d(s.train, labelled)
        rng = np.random.default_rng(100 + seed)
        scores = np.array(
            [
                s.accuracy(
                    np.concatenate([labelled, rng.choice(candidates, more * 10, False)]), seed
                )
                for _ in range(draws)
            ]
        )
        rows.append(
            {
                "seed": seed,
                "mean": float(scores.mean()),
                "std": float(scores.std()),
                "min": float(scores.min()),
                "max": float(scores.max()),
                "above_mean_by_0.03": int((scores >= scores.mean() + 0.03).sum()),
                "scores": scores.tolist(),
            }
        )
        print(
            f"seed {seed}: {draws} random draws of +{more}/class: mean {scores.mean():.3f}, "
            f"std {scores.std():.3f}, min {scores.min():.3f}, max {scores.max():.3f} "
            f"(best - mean {scores.max() - scores.mean():+.3f}; "
            f"{rows[-1]['above_mean_by_0.03']} of {draws} beat the mean by 0.03)",
            flush=True,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"more": more, "draws": draws, "seeds": rows}))


def pick(
    strategy: str, s: Study, labelled: np.ndarray, candidates: np.ndarray, n: int, seed: int
) -> np.ndarray:
    rng = np.random.default_rng(seed + 1000 * (1 + STRATEGIES.index(strategy)))
    if strategy in ("random", "random2"):
        return rng.choice(candidates, n, replace=False)
    if strategy == "typiclust":
        return typiclust(s, labelled, candidates, n, seed)
    if strategy == "eer":
        return harmonic_picks(s.graph, labelled, s.y, len(s.classes), candidates, n)
    if strategy == "oracle-balanced":
        return per_class(rng, candidates, s.y[candidates], n, len(s.classes))
    weight, predicted = margins(s, labelled, seed)
    weight[labelled] = 0.0
    by_margin = candidates[np.argsort(-weight[candidates], kind="stable")]
    if strategy.startswith("coverage"):
        graph = s.graph
        if strategy != "coverage":
            own = s.own["semantics" if "semantics" in strategy else "blocks.6"]
            graph = exact_graph(np.ascontiguousarray(own, np.float32), DEVICE)
        picks, _ = weighted_coverage(graph, candidates, labelled, weight, n, predicted)
        return np.array(picks)
    if strategy == "eer-quota":
        group = predicted[candidates]
        return harmonic_picks(s.graph, labelled, s.y, len(s.classes), candidates, n, group)
    if strategy == "balanced-random":
        return per_class(rng, candidates, predicted[candidates], n, len(s.classes))
    if strategy.endswith("herding"):
        uncertain = strategy == "uncertainty-herding"
        # The uncertainty weight as `coverage` floors it (indexer/learning/selection.py).
        floored = MIN_WEIGHT + (1.0 - MIN_WEIGHT) * weight
        weights = floored if uncertain else np.ones(len(s.x), np.float32)
        return herding(s.x, labelled, candidates, n, weights, predicted[candidates])
    if strategy == "cluster-margin":
        top = by_margin[: 5 * n]
        assign = kmeans(s.x[top], n, seed).index.search(s.x[top], 1)[1][:, 0]
        chosen = [top[assign == c][0] for c in np.unique(assign)]  # top is by margin
        return np.array((chosen + [i for i in top if i not in set(chosen)])[:n])
    if strategy == "weighted-kmeans":
        top = by_margin[: 10 * n]
        centres = kmeans(s.x[top], n, seed, weight[top].astype(np.float32)).centroids
        free = np.ones(len(top), bool)
        chosen = []
        for c in centres:
            score = np.where(free, s.x[top] @ c, -np.inf)
            j = int(np.argmax(score))
            chosen.append(top[j])
            free[j] = False
        return np.array(chosen)
    wrong = candidates[predicted[candidates] != s.y[candidates]]
    if strategy == "oracle-wrong":
        return rng.choice(wrong, n, replace=False)
    if strategy == "oracle-confident-wrong":
        return wrong[np.argsort(weight[wrong], kind="stable")[:n]]
    raise SystemExit(f"unknown strategy {strategy!r}; use {', '.join(STRATEGIES)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--collection", default=COLLECTION)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--more", type=int, default=10, help="labels a class to add")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument(
        "--random-draws",
        type=int,
        default=0,
        help="instead of comparing strategies: this many random draws a seed, their spread",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    study = Study(args.data, args.collection)
    if args.random_draws:
        random_spread(
            study,
            args.seeds,
            args.more,
            args.random_draws,
            args.out.with_name("suggest-spread.json"),
        )
        return 0
    strategies = [x for x in args.strategies.split(",") if x]
    rows: dict[str, list[float]] = {name: [] for name in strategies}
    start = time.monotonic()
    for seed in range(args.seeds):
        labelled = study.few(seed)
        candidates = np.setdiff1d(study.train, labelled)
        before = study.accuracy(labelled, seed)
        for name in strategies:
            picks = pick(name, study, labelled, candidates, args.more * 10, seed)
            rows[name].append(study.accuracy(np.concatenate([labelled, picks]), seed))
            print(
                f"[{time.monotonic() - start:6.0f}s] seed {seed}: 10/class {before:.3f}, "
                f"+{args.more}/class {name} {rows[name][-1]:.3f}",
                file=sys.stderr,
                flush=True,
            )
    print(f"\n+{args.more} labels a class, test accuracy of self-training (combined features)")
    for name, accuracies in rows.items():
        print(f"  {name:24s} mean {np.mean(accuracies):.3f}  per seed {np.round(accuracies, 3)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"more": args.more, "seeds": args.seeds, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
