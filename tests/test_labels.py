"""Labels over real gRPC: set/clear, CSV import/export round trips, the rule that
predictions never replace human labels, and the CLI's JSON shapes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ServerHandle
from labelled_images import crop_set

from service.cli import main
from service.client import ImageToAdd, StrataClient, StrataClientError

PER_CLASS = 4


@pytest.fixture(scope="module")
def examples() -> list[tuple[str, bytes, str]]:
    return crop_set(PER_CLASS, seed=1, prefix="labels")


def _fresh(client: StrataClient, examples: list[tuple[str, bytes, str]], with_labels: bool) -> str:
    name = f"labels-{uuid.uuid4().hex[:8]}"
    client.create_collection(name, depths=["semantics"])
    images = [ImageToAdd(u, b, [label] if with_labels else []) for u, b, label in examples]
    results = list(client.add_images(name, images))
    assert {r.status for r in results} == {"added"}
    _ids[name] = {r.uri: r.id for r in results}
    return name


_ids: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module")
def labelled(server: ServerHandle, examples: list[tuple[str, bytes, str]]) -> Iterator[str]:
    """A collection of the crops, labelled with their class at index time."""
    with server.client(timeout=300) as client:
        name = _fresh(client, examples, with_labels=True)
        yield name
        client.delete_collection(name)


def _labels(client: StrataClient, collection: str, source: str = "") -> dict[str, str]:
    return {x.uri: x.label for x in client.export_labels(collection, source).labels}


def test_labels_given_at_index_time_are_human(
    client: StrataClient, labelled: str, examples: list[tuple[str, bytes, str]]
) -> None:
    exported = client.export_labels(labelled)
    assert {x.uri: x.label for x in exported.labels} == {u: label for u, _, label in examples}
    assert {(x.source, x.confidence) for x in exported.labels} == {("human", 1.0)}
    assert exported.csv.splitlines()[0] == "id,uri,label,source,confidence"


def test_set_replaces_and_clear_removes(
    client: StrataClient, examples: list[tuple[str, bytes, str]]
) -> None:
    name = _fresh(client, examples, with_labels=False)
    try:
        ids = _ids[name]
        first, second = ids[examples[0][0]], ids[examples[1][0]]
        assert client.set_labels(name, {first: ["cat", "pet"], second: "dog"}) == 3
        assert sorted((x.id, x.label) for x in client.export_labels(name).labels) == sorted(
            [(first, "cat"), (first, "pet"), (second, "dog")]
        )
        client.set_labels(name, {first: "tiger"})  # set replaces the item's labels
        assert sorted(x.label for x in client.export_labels(name).labels) == ["dog", "tiger"]
        assert client.clear_labels(name, [second]) == 1
        assert [x.label for x in client.export_labels(name).labels] == ["tiger"]
        assert client.clear_labels(name) == 1
        assert list(client.export_labels(name).labels) == []
    finally:
        client.delete_collection(name)


def test_bad_label_requests_are_refused_with_the_reason(
    client: StrataClient, labelled: str
) -> None:
    with pytest.raises(StrataClientError) as missing:
        client.set_labels(labelled, {987654321: "cat"})
    assert missing.value.code == "NOT_FOUND" and "987654321" in missing.value.details
    with pytest.raises(StrataClientError) as empty:
        client.set_labels(labelled, {1: " "})
    assert empty.value.code == "INVALID_ARGUMENT" and "empty" in empty.value.details
    with pytest.raises(StrataClientError) as source:
        client.export_labels(labelled, "robot")
    assert source.value.code == "INVALID_ARGUMENT"


def test_csv_round_trip_by_uri_and_by_id(
    client: StrataClient, labelled: str, examples: list[tuple[str, bytes, str]]
) -> None:
    exported = client.export_labels(labelled)
    other = _fresh(client, examples, with_labels=False)
    try:
        # The full export (id,uri,label,source,confidence) keys on uri across collections.
        result = client.import_labels(other, exported.csv)
        assert (result.items, result.labels) == (len(examples), len(examples))
        assert _labels(client, other) == _labels(client, labelled)
        assert {x.source for x in client.export_labels(other).labels} == {"human"}

        # uri,label without a header.
        client.clear_labels(other)
        plain = "".join(f"{u},{label}\n" for u, _, label in examples)
        client.import_labels(other, plain)
        assert _labels(client, other) == _labels(client, labelled)

        # id,label with a header, relabelling everything "x".
        ids = [x.id for x in client.export_labels(other).labels]
        client.import_labels(other, "id,label\n" + "".join(f"{i},x\n" for i in ids))
        assert set(_labels(client, other).values()) == {"x"}
        assert len(_labels(client, other)) == len(examples)
    finally:
        client.delete_collection(other)


def test_import_refuses_unknown_rows_and_changes_nothing(
    client: StrataClient, labelled: str
) -> None:
    before = _labels(client, labelled)
    known = next(iter(before))
    text = f"uri,label\n{known},changed\nnot/there.jpg,cat\n"
    with pytest.raises(StrataClientError) as refused:
        client.import_labels(labelled, text)
    assert refused.value.code == "NOT_FOUND"
    assert "line 3" in refused.value.details and "not/there.jpg" in refused.value.details
    with pytest.raises(StrataClientError) as bad:
        client.import_labels(labelled, "id,label\nseven,cat\n")
    assert bad.value.code == "INVALID_ARGUMENT" and "line 2" in bad.value.details
    assert _labels(client, labelled) == before


def test_predictions_never_replace_human_labels(
    client: StrataClient, examples: list[tuple[str, bytes, str]]
) -> None:
    name = _fresh(client, examples, with_labels=True)
    try:
        human = client.export_labels(name).labels
        unlabelled = [x.id for x in human[::2]]  # clear every other one
        client.clear_labels(name, unlabelled)
        kept = {x.id: x.label for x in client.export_labels(name, "human").labels}

        result = client.predict_labels(name)
        assert {p.id for p in result.predictions} == set(unlabelled)
        assert result.stored == len(unlabelled)
        after = client.export_labels(name)
        assert {x.id: x.label for x in after.labels if x.source == "human"} == kept
        assert {x.id for x in after.labels if x.source == "predicted"} == set(unlabelled)
        assert all(0.0 < x.confidence <= 1.0 for x in after.labels)

        # A predicted row imported for a human-labelled item is ignored...
        some_human = next(iter(kept))
        client.import_labels(name, f"id,label,source\n{some_human},robot,predicted\n")
        assert _by_id(client, name)[some_human] == [(kept[some_human], "human")]
        # ...and a human label set on a predicted item replaces the prediction.
        target = unlabelled[0]
        client.set_labels(name, {target: "checked"})
        assert _by_id(client, name)[target] == [("checked", "human")]
        # Predicting again leaves every human label as it was.
        client.predict_labels(name)
        again = _by_id(client, name)
        assert again[target] == [("checked", "human")]
        assert all(again[i] == [(label, "human")] for i, label in kept.items())
    finally:
        client.delete_collection(name)


def _by_id(client: StrataClient, name: str) -> dict[int, list[tuple[str, str]]]:
    out: dict[int, list[tuple[str, str]]] = {}
    for x in client.export_labels(name).labels:
        out.setdefault(x.id, []).append((x.label, x.source))
    return out


def test_cli_import_export_set_clear(
    server: ServerHandle,
    client: StrataClient,
    labelled: str,
    examples: list[tuple[str, bytes, str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run(*argv: str) -> dict:  # type: ignore[type-arg]
        assert main([*argv, "--server", server.address, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    exported = run("labels", "export", "--collection", labelled)
    assert set(exported) == {"labels"}
    assert set(exported["labels"][0]) == {"id", "uri", "label", "source", "confidence"}

    other = _fresh(client, examples, with_labels=False)
    try:
        path = tmp_path / "labels.csv"
        path.write_text("uri,label\n" + "".join(f"{u},{lb}\n" for u, _, lb in examples))
        assert run("labels", "import", str(path), "--collection", other) == {
            "items": len(examples),
            "labels": len(examples),
        }
        ids = [x["id"] for x in run("labels", "export", "--collection", other)["labels"]]
        assert run("labels", "set", str(ids[0]), "--collection", other, "--label", "z") == {
            "labels": 1
        }
        assert run("labels", "clear", str(ids[1]), "--collection", other) == {"cleared": 1}
        left = run("labels", "export", "--collection", other)["labels"]
        assert len(left) == len(examples) - 1 and left[0]["label"] == "z"
        assert main(["labels", "clear", "--collection", other, "--server", server.address]) == 2
    finally:
        client.delete_collection(other)
