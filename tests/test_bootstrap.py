"""Label bootstrapping over real gRPC on real photos: predicting the unlabelled items,
suggesting what to label next, finding flipped labels, grouping near-duplicates, and the
CLI's JSON shapes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import ServerHandle
from labelled_images import CROP_CLASSES, crop_set, distinct_photos, jpeg
from PIL import ImageEnhance

from service.cli import main
from service.client import ImageToAdd, StrataClient, StrataClientError

PER_CLASS = 8
HUMAN_PER_CLASS = 3
METHODS = {"probe", "self-training", "knn", "propagation"}


@pytest.fixture(scope="module")
def examples() -> list[tuple[str, bytes, str]]:
    return crop_set(PER_CLASS, seed=4, prefix="boot")


@pytest.fixture(scope="module")
def indexed(
    server: ServerHandle, examples: list[tuple[str, bytes, str]]
) -> Iterator[tuple[str, dict[str, int]]]:
    """The crops in a collection without labels (uri -> id); tests set the labels they need.
    Half the items carry metadata part=a, the other half part=b."""
    with server.client(timeout=300) as client:
        name = f"boot-{uuid.uuid4().hex[:8]}"
        client.create_collection(name, depths=["parts", "semantics"])
        images = [
            ImageToAdd(u, b, metadata={"part": "ab"[i % 2]}) for i, (u, b, _) in enumerate(examples)
        ]
        ids = {r.uri: r.id for r in client.add_images(name, images)}
        yield name, ids
        client.delete_collection(name)


def _label_first(
    client: StrataClient,
    indexed: tuple[str, dict[str, int]],
    examples: list[tuple[str, bytes, str]],
    per_class: int,
) -> set[int]:
    """Human labels on the first `per_class` items of each class only; returns their ids."""
    name, ids = indexed
    client.clear_labels(name)
    chosen = {ids[u]: label for u, _, label in examples if int(u[-7:-4]) < per_class}
    client.set_labels(name, chosen)
    return set(chosen)


def test_predict_labels_every_unlabelled_item(
    client: StrataClient,
    indexed: tuple[str, dict[str, int]],
    examples: list[tuple[str, bytes, str]],
) -> None:
    name, ids = indexed
    human = _label_first(client, indexed, examples, HUMAN_PER_CLASS)
    truth = {ids[u]: label for u, _, label in examples}
    result = client.predict_labels(name, folds=3)
    assert {p.id for p in result.predictions} == set(truth) - human
    correct = sum(p.label == truth[p.id] for p in result.predictions)
    assert correct / len(result.predictions) >= 0.9, result
    singles = [c for c in result.candidates if c.method != "ensemble"]
    assert {(c.method, c.depth) for c in singles if "+" not in c.depth} == {
        (m, d) for m in METHODS for d in ("parts", "semantics")
    }
    # The probe and self-training on both depths' features combined compete too.
    combined = [c for c in singles if "+" in c.depth]
    assert {c.method for c in combined} == {"probe", "self-training"}
    assert all(sorted(c.depth.split("+")) == ["parts", "semantics"] for c in combined)
    # The answer is the ensemble of the best and its near-ties by CV (on these crops several
    # candidates label every held-out crop right), scored on the same folds.
    (ensemble,) = [c for c in result.candidates if c.method == "ensemble"]
    assert set(ensemble.depth.split("+")) <= {"parts", "semantics"}
    assert (result.method, result.depth) == ("ensemble", ensemble.depth)
    assert result.cv_accuracy == pytest.approx(ensemble.cv_accuracy)
    assert all(0.0 < p.confidence <= 1.0 for p in result.predictions)
    assert result.stored == len(result.predictions)
    stored = {x.id: x for x in client.export_labels(name, "predicted").labels}
    assert {i: x.label for i, x in stored.items()} == {p.id: p.label for p in result.predictions}

    ensemble = client.predict_labels(name, methods=["ensemble"], dry_run=True)
    assert ensemble.method == "ensemble" and "+" in ensemble.depth
    agree = sum(p.label == truth[p.id] for p in ensemble.predictions)
    assert agree / len(ensemble.predictions) >= 0.9, ensemble
    only_knn = client.predict_labels(name, methods=["knn"], depths=["semantics"], dry_run=True)
    assert (only_knn.method, only_knn.depth, only_knn.stored) == ("knn", "semantics", 0)
    with pytest.raises(StrataClientError) as bad:
        client.predict_labels(name, methods=["oracle"])
    assert bad.value.code == "INVALID_ARGUMENT" and "oracle" in bad.value.details


def test_suggest_returns_unlabelled_items_most_informative_first(
    client: StrataClient,
    indexed: tuple[str, dict[str, int]],
    examples: list[tuple[str, bytes, str]],
) -> None:
    name, ids = indexed
    human = _label_first(client, indexed, examples, 2)
    result = client.suggest_labels(name, 5, folds=2)
    picked = [s.id for s in result.suggestions]
    assert len(picked) == 5 and len(set(picked)) == 5
    assert not set(picked) & human and set(picked) <= set(ids.values())
    scores = [s.score for s in result.suggestions]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert result.method in METHODS | {"ensemble"}

    part_a = {ids[u] for i, (u, _, _) in enumerate(examples) if i % 2 == 0}
    only_a = client.suggest_labels(name, 4, metadata={"part": "a"}, folds=2)
    assert {s.id for s in only_a.suggestions} <= part_a - human

    client.clear_labels(name)  # no labels at all: coverage alone, still unlabelled items
    cold = client.suggest_labels(name, len(ids) + 5)
    assert cold.method == "" and sorted(s.id for s in cold.suggestions) == sorted(ids.values())


def test_issues_find_flipped_labels(
    client: StrataClient,
    indexed: tuple[str, dict[str, int]],
    examples: list[tuple[str, bytes, str]],
) -> None:
    name, ids = indexed
    _label_first(client, indexed, examples, PER_CLASS)
    classes = list(CROP_CLASSES)
    flipped = {}
    for u, _, label in (examples[1], examples[PER_CLASS + 2]):  # one cat, one coffee
        wrong = classes[(classes.index(label) + 1) % len(classes)]
        flipped[ids[u]] = (label, wrong)
    client.set_labels(name, {i: wrong for i, (_, wrong) in flipped.items()})

    result = client.label_issues(name, folds=4)
    found = {i.id: i for i in result.issues}
    assert set(flipped) <= set(found), result
    for item_id, (label, wrong) in flipped.items():
        assert (found[item_id].label, found[item_id].suggested) == (wrong, label)
    # The flipped ones are the most suspicious, and few clean labels are flagged.
    assert {i.id for i in result.issues[:2]} == set(flipped)
    assert len(result.issues) <= len(flipped) + 2
    assert [i.score for i in result.issues] == sorted(
        (i.score for i in result.issues), reverse=True
    )


def test_duplicates_group_planted_near_copies(client: StrataClient) -> None:
    name = f"dupes-{uuid.uuid4().hex[:8]}"
    client.create_collection(name, depths=["semantics"])
    try:
        photos = distinct_photos()
        # copy -> original: downscaled, brightened, upscaled; each recompressed.
        copies = {
            "copy-astronaut.jpg": ("astronaut", jpeg(photos[0][1].resize((160, 160)), 75)),
            "copy-coffee.jpg": (
                "coffee",
                jpeg(ImageEnhance.Brightness(photos[2][1]).enhance(1.08), 70),
            ),
            "copy-rocket.jpg": ("rocket", jpeg(photos[3][1].resize((300, 300)), 80)),
        }
        images = [ImageToAdd(n, jpeg(image)) for n, image in photos]
        images += [ImageToAdd(u, data) for u, (_, data) in copies.items()]
        ids = {r.uri: r.id for r in client.add_images(name, images)}
        result = client.duplicates(name)  # default: deepest depth at its own threshold
        assert result.depth == "semantics" and result.threshold == pytest.approx(0.83)
        groups = sorted(sorted(m.uri for m in g.members) for g in result.groups)
        assert groups == sorted(sorted([copy, original]) for copy, (original, _) in copies.items())
        assert {m.id for g in result.groups for m in g.members} <= set(ids.values())
        assert client.duplicates(name, threshold=0.999).groups == []
        with pytest.raises(StrataClientError) as bad:
            client.duplicates(name, threshold=1.5)
        assert bad.value.code == "INVALID_ARGUMENT"
    finally:
        client.delete_collection(name)


def test_cli_json_shapes(
    server: ServerHandle,
    client: StrataClient,
    indexed: tuple[str, dict[str, int]],
    examples: list[tuple[str, bytes, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name, _ = indexed
    _label_first(client, indexed, examples, HUMAN_PER_CLASS)

    def run(*argv: str) -> dict[str, Any]:
        assert main([*argv, "--collection", name, "--server", server.address, "--json"]) == 0
        document: dict[str, Any] = json.loads(capsys.readouterr().out)
        return document

    def keys(rows: list[dict[str, Any]], wanted: set[str]) -> Callable[[], bool]:
        return lambda: bool(rows) and all(set(r) == wanted for r in rows)

    predicted = run("labels", "predict", "--dry-run", "--folds", "3")
    assert {"method", "depth", "cv_accuracy", "predictions"} <= set(predicted)
    assert keys(predicted["predictions"], {"id", "uri", "label", "confidence"})()
    suggested = run("labels", "suggest", "-n", "3", "--folds", "3")
    assert keys(suggested["suggestions"], {"id", "uri", "score"})()
    issues = run("labels", "issues", "--folds", "3")
    assert isinstance(issues["issues"], list)
    assert all(set(i) == {"id", "uri", "label", "suggested", "score"} for i in issues["issues"])
    groups = run("duplicates", "--threshold", "0.999")
    assert isinstance(groups["groups"], list)
    assert all(set(m) == {"id", "uri"} for g in groups["groups"] for m in g)
