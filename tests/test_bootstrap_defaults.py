"""The label-bootstrapping defaults of issue 14 on real photos: the probe and self-training
on two depths' features combined (centred, unit-scaled, concatenated) compete with the
per-depth predictors, and label issues come from cleanlab's `find_label_issues` on the
chosen predictor's out-of-fold probabilities (the hand-written method when it cannot)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from conftest import ServerHandle
from labelled_images import CROP_CLASSES, crop_set

from indexer.catalog.collections import get_collection
from indexer.learning import bootstrap, choosing, labelled_vectors, mislabels, neighbours
from indexer.learning.labelled_vectors import LabelledVectors
from service.client import ImageToAdd, StrataClient

PER_CLASS = 8


@pytest.fixture(scope="module")
def examples() -> list[tuple[str, bytes, str]]:
    return crop_set(PER_CLASS, seed=14, prefix="defaults")


@pytest.fixture(scope="module")
def indexed(
    server: ServerHandle, examples: list[tuple[str, bytes, str]]
) -> Iterator[tuple[str, dict[str, int]]]:
    with server.client(timeout=300) as client:
        name = f"defaults-{uuid.uuid4().hex[:8]}"
        client.create_collection(name, depths=["parts", "semantics"])
        ids = {
            r.uri: r.id for r in client.add_images(name, [ImageToAdd(u, b) for u, b, _ in examples])
        }
        yield name, ids
        client.delete_collection(name)


def test_combined_features_compete_and_label_the_rest(
    client: StrataClient,
    indexed: tuple[str, dict[str, int]],
    examples: list[tuple[str, bytes, str]],
) -> None:
    name, ids = indexed
    truth = {ids[u]: label for u, _, label in examples}
    client.clear_labels(name)
    few = {ids[u]: label for u, _, label in examples if int(u[-7:-4]) < 2}
    client.set_labels(name, few)
    result = client.predict_labels(name, methods=["probe", "self-training"], folds=2, dry_run=True)
    combined = {(c.method, c.depth) for c in result.candidates if "+" in c.depth}
    assert {m for m, _ in combined} == {"probe", "self-training"}, result.candidates
    assert all(sorted(d.split("+")) == ["parts", "semantics"] for _, d in combined)
    assert result.cv_accuracy == pytest.approx(max(c.cv_accuracy for c in result.candidates))
    right = sum(p.label == truth[p.id] for p in result.predictions)
    assert {p.id for p in result.predictions} == set(truth) - set(few)
    assert right / len(result.predictions) >= 0.9, result

    # One depth named: nothing to combine.
    single = client.predict_labels(name, depths=["semantics"], folds=2, dry_run=True)
    assert all("+" not in c.depth for c in single.candidates)
    # Suggestions come with whichever predictor won, combined features included.
    suggested = client.suggest_labels(name, 4, folds=2)
    assert len({s.id for s in suggested.suggestions}) == 4
    assert not {s.id for s in suggested.suggestions} & set(few)
    assert suggested.depth in ("parts", "semantics")


def test_centred_vectors_are_unit_length_around_the_collection_mean() -> None:
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(50, 16))).astype(np.float32) + 3.0  # one common direction
    c = bootstrap.centred(x)
    assert np.allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)
    # Before centring every pair is nearly parallel; after, the pairs spread out.
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert (unit @ unit.T).min() > 0.9 and (c @ c.T).min() < 0.0


def test_cleanlab_finds_flipped_labels_in_out_of_fold_probabilities(
    server: ServerHandle,
    client: StrataClient,
    indexed: tuple[str, dict[str, int]],
    examples: list[tuple[str, bytes, str]],
) -> None:
    name, ids = indexed
    classes = list(CROP_CLASSES)
    client.clear_labels(name)
    client.set_labels(name, {ids[u]: label for u, _, label in examples})
    flipped = {}
    for u, _, label in (examples[0], examples[PER_CLASS + 3], examples[2 * PER_CLASS + 5]):
        flipped[ids[u]] = classes[(classes.index(label) + 1) % len(classes)]
    client.set_labels(name, flipped)

    ctx = server.running.ctx
    found = bootstrap.out_of_fold(ctx, get_collection(ctx, name), folds=4)
    assert len(found.ids) == len(examples) and found.probabilities.shape == (len(examples), 3)
    rows = {int(found.ids[r]): r for r in range(len(found.ids))}
    by_cleanlab = mislabels.find_issues(found.y, found.probabilities, mislabels.CLEANLAB)
    by_hand = mislabels.find_issues(found.y, found.probabilities, mislabels.HAND_WRITTEN)
    for flagged in (by_cleanlab, by_hand):
        top = {int(found.ids[r]) for r in flagged.rows[: len(flipped)]}
        assert top == set(flipped), (flagged, flipped)
        assert list(flagged.score) == sorted(flagged.score, reverse=True)
    for item_id, wrong in flipped.items():
        r = rows[item_id]
        assert found.classes[found.y[r]] == wrong
        at = int(np.flatnonzero(by_cleanlab.rows == r)[0])
        truth = next(label for u, _, label in examples if ids[u] == item_id)
        assert found.classes[by_cleanlab.suggested[at]] == truth

    # The service answers with cleanlab's ranking, the flipped labels first.
    issues = client.label_issues(name, folds=4).issues
    assert {i.id for i in issues[: len(flipped)]} == set(flipped)
    assert [i.id for i in issues] == [int(found.ids[r]) for r in by_cleanlab.rows]

    # A class with no held-out item: cleanlab cannot run, the hand-written method answers.
    keep = found.y != 2
    y, p = found.y[keep], found.probabilities[keep]
    fallback = mislabels.find_issues(y, p, mislabels.CLEANLAB)
    expected = mislabels.hand_written_issues(y, p)
    assert np.array_equal(fallback.rows, expected.rows)


def test_cleanlab_flags_the_least_believable_labels_as_many_as_it_estimates() -> None:
    """Two labels confidently of another class, and one whose out-of-fold probabilities are
    spread over the other classes: cleanlab's default filter (prune_by_noise_rate) passes
    over the spread one; the filter `labels issues` uses takes the labels with the lowest
    self-confidence, as many as cleanlab's confident joint estimates: here 2, the spread
    one and the less believable of the confident two (bench/issues_study.py measures the
    trade on real labels: better precision and recall both)."""
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    p = np.full((60, 3), 0.05)
    p[np.arange(60), y] = 0.9
    p += rng.uniform(0.0, 0.02, p.shape)  # no exact ties
    p[5] = [0.04, 0.92, 0.04]  # labelled 0, confidently 1
    p[25] = [0.03, 0.05, 0.92]  # labelled 1, confidently 2
    p[45] = [0.49, 0.49, 0.02]  # labelled 2, spread over 0 and 1
    p /= p.sum(axis=1, keepdims=True)

    flagged = mislabels.find_issues(y, p, mislabels.CLEANLAB)
    expected = num_label_issues(labels=y, pred_probs=p)
    assert expected == 2  # the two confident ones: the spread one is not counted
    self_confidence = p[np.arange(60), y]
    assert list(flagged.rows) == list(np.argsort(self_confidence)[:expected])
    assert list(flagged.rows) == [45, 5]  # the least believable first
    default = find_label_issues(labels=y, pred_probs=p, n_jobs=1)
    assert not default[45]  # what the default filter misses


def _fitted(method: str, depth: str, right: np.ndarray, y: np.ndarray) -> choosing.Fitted:
    """A candidate whose out-of-fold answer is the true class where `right`, else the next."""
    n, classes = len(y), 3
    guess = np.where(right, y, (y + 1) % classes)
    oof = np.full((n, classes), 0.1, np.float32)
    oof[np.arange(n), guess] = 0.8
    data = LabelledVectors(np.arange(n), np.zeros((n, 4), np.float32), y, ["a", "b", "c"])
    accuracy = float(right.mean())
    candidate = choosing.Candidate(method, depth, accuracy)
    return choosing.Fitted(candidate, data, None, oof, np.ones(n, bool))


@pytest.mark.parametrize("labels", [100, 10_000])
def test_the_ensemble_averages_the_candidates_within_one_standard_error_of_the_best(
    labels: int,
) -> None:
    """CV accuracies 0.70, 0.68 and 0.55: with 100 held-out labels (standard error 0.046) the
    first two are a tie and are averaged; with 10,000 (0.0046) the best stands alone."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, labels)
    order = rng.permutation(labels)

    def right(share: float, offset: int) -> np.ndarray:
        mask = np.zeros(labels, bool)
        mask[np.roll(order, offset)[: round(share * labels)]] = True
        return mask

    fitted = [
        _fitted("self-training", "semantics+blocks.6", right(0.70, 0), y),
        _fitted("probe", "blocks.6", right(0.68, labels // 7), y),
        _fitted("knn", "parts", right(0.55, labels // 3), y),
    ]
    fitted[0].combined = ("semantics", "blocks.6")
    ensemble = choosing._ensemble(fitted)
    if labels == 10_000:
        assert ensemble is None
        return
    assert ensemble is not None
    assert [m.candidate.method for m in ensemble.members] == ["self-training", "probe"]
    assert ensemble.candidate == choosing.Candidate(
        "ensemble",
        "semantics+blocks.6",
        float((ensemble.out_of_fold.argmax(axis=1) == y).mean()),
    )
    # Its data are the first member's combined features: suggestions must not search a
    # depth's FAISS index with them (they take that depth's own vectors and graph).
    assert ensemble.combined == ("semantics", "blocks.6") and ensemble.depth == "semantics"
    assert np.allclose(ensemble.out_of_fold, (fitted[0].out_of_fold + fitted[1].out_of_fold) / 2)


def _brute_force_neighbours(x: np.ndarray, k: int) -> np.ndarray:
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def test_the_exact_graph_holds_each_rows_nearest_others(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(23, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    monkeypatch.setattr(neighbours, "QUERY_CHUNK", 5)  # rows past the first chunk, too
    graph = neighbours.exact_graph(x, torch.device("cpu"), k=4)
    assert np.array_equal(graph.neighbours, _brute_force_neighbours(x, 4))
    rows = np.arange(len(x))[:, None]
    assert np.allclose(graph.similarities, (x @ x.T)[rows, graph.neighbours], atol=1e-6)
    assert neighbours.exact_graph(x[:1], torch.device("cpu")).neighbours.shape == (1, 0)


def test_suggestions_cover_the_graph_of_the_combined_features_the_predictor_uses(
    server: ServerHandle, indexed: tuple[str, dict[str, int]]
) -> None:
    """A predictor on two depths combined has no FAISS index for its features: suggest's
    coverage balls come from their exact graph; a one-depth predictor keeps its own."""
    name, _ = indexed
    ctx = server.running.ctx
    info = get_collection(ctx, name)
    depths = [labelled_vectors.load(ctx, info, info.depth(d)) for d in ("semantics", "parts")]
    x = np.concatenate([bootstrap.centred(d.x) for d in depths], axis=1)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    first = depths[0]
    data = LabelledVectors(first.ids, x.astype(np.float32), first.y, first.classes)
    labelled = len(first.labelled)  # whatever the module's other tests left
    oof, tested = np.zeros((labelled, 2), np.float32), np.ones(labelled, bool)
    combined = choosing.Fitted(
        choosing.Candidate("self-training", "semantics+parts", 0.9), data, None, oof, tested
    )
    combined.combined = ("semantics", "parts")
    graph = choosing.graph_of(ctx, info, info.depth("semantics"), first)
    one_depth = choosing.Fitted(
        choosing.Candidate("probe", "semantics", 0.9), first, graph, oof, tested
    )
    spec = info.depth("semantics")
    for best in (combined, choosing.mean_of((one_depth, combined))):
        graph = bootstrap._coverage_graph(ctx, info, spec, best, best.data)
        k = graph.neighbours.shape[1]
        assert np.array_equal(graph.neighbours, _brute_force_neighbours(x, k)), best.candidate
    assert bootstrap._coverage_graph(ctx, info, spec, one_depth, first) is one_depth.graph
