"""What the labels commands make of unusual input, over real gRPC: an explicit 0 is refused
rather than read as the default (proto3 sends 0 for "not given"), the help says the
defaults, the too-few-labels error says what is missing, and CSV import counts what it wrote
and words its refusals."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ServerHandle
from labelled_images import CROP_CLASSES, crop_set

from service.cli import main
from service.client import ImageToAdd, StrataClient, StrataClientError

PER_CLASS = 3


@pytest.fixture(scope="module")
def examples() -> list[tuple[str, bytes, str]]:
    return crop_set(PER_CLASS, seed=7, prefix="inputs")


@pytest.fixture(scope="module")
def indexed(
    server: ServerHandle, examples: list[tuple[str, bytes, str]]
) -> Iterator[tuple[str, dict[str, int]]]:
    """The crops in a collection without labels (uri -> id); each test sets the labels it
    needs."""
    with server.client(timeout=300) as client:
        name = f"inputs-{uuid.uuid4().hex[:8]}"
        client.create_collection(name, depths=["semantics"])
        ids = {
            r.uri: r.id for r in client.add_images(name, [ImageToAdd(u, b) for u, b, _ in examples])
        }
        yield name, ids
        client.delete_collection(name)


def _one_label_per_class(
    client: StrataClient,
    indexed: tuple[str, dict[str, int]],
    examples: list[tuple[str, bytes, str]],
) -> dict[int, str]:
    name, ids = indexed
    client.clear_labels(name)
    chosen = {ids[u]: label for u, _, label in examples if u.endswith("/000.jpg")}
    client.set_labels(name, chosen)
    return chosen


@pytest.fixture
def cli(server: ServerHandle, capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, Any]]:
    """`strata ARGS... --server ... --json` in this process: (exit status, the document)."""

    def run(*argv: str) -> tuple[int, Any]:
        rc = main([*argv, "--server", server.address, "--json"])
        return rc, json.loads(capsys.readouterr().out)

    return run


# -- 0 is not the default -------------------------------------------------------------------


def test_suggest_n_0_is_a_usage_error_not_the_default(
    cli: Callable[..., tuple[int, Any]],
    client: StrataClient,
    indexed: tuple[str, dict[str, int]],
) -> None:
    name, _ = indexed
    client.clear_labels(name)  # every item a candidate
    for n in ("0", "-2"):
        rc, document = cli("labels", "suggest", "--collection", name, "-n", n)
        assert rc == 2, document
        assert document["error"]["code"] == "USAGE"
        assert "-n must be at least 1" in document["error"]["message"]
        assert f"got {n}" in document["error"]["message"]
    rc, document = cli("labels", "suggest", "--collection", name, "-n", "1")
    assert rc == 0 and len(document["suggestions"]) == 1, document


def test_duplicates_threshold_0_is_a_usage_error_not_the_default(
    cli: Callable[..., tuple[int, Any]], indexed: tuple[str, dict[str, int]]
) -> None:
    name, _ = indexed
    for threshold in ("0", "1.5", "nan"):
        rc, document = cli("duplicates", "--collection", name, "--threshold", threshold)
        assert rc == 2, (threshold, document)
        assert document["error"]["code"] == "USAGE"
        assert "--threshold must be in (0, 1]" in document["error"]["message"]
    rc, document = cli("duplicates", "--collection", name, "--threshold", "1")
    assert rc == 0 and document["threshold"] == 1.0, document
    rc, document = cli("duplicates", "--collection", name)  # not given: the server's default
    assert rc == 0 and document["threshold"] == pytest.approx(0.83), document  # semantics


@pytest.mark.parametrize(
    "argv",
    [
        ("labels", "predict", "--dry-run"),
        ("labels", "issues"),
        ("labels", "suggest"),
        ("probe",),
    ],
    ids=["predict", "issues", "suggest", "probe"],
)
def test_folds_0_is_a_usage_error_not_the_default(
    cli: Callable[..., tuple[int, Any]],
    client: StrataClient,
    indexed: tuple[str, dict[str, int]],
    examples: list[tuple[str, bytes, str]],
    argv: tuple[str, ...],
) -> None:
    name, ids = indexed
    client.set_labels(name, {ids[u]: label for u, _, label in examples})  # enough to run
    for folds in ("0", "1"):
        rc, document = cli(*argv, "--collection", name, "--folds", folds)
        assert rc == 2, (folds, document)
        assert document["error"]["code"] == "USAGE"
        assert "--folds must be at least 2" in document["error"]["message"]


def test_classify_k_0_is_a_usage_error(
    cli: Callable[..., tuple[int, Any]], indexed: tuple[str, dict[str, int]]
) -> None:
    name, ids = indexed
    item = str(next(iter(ids.values())))
    rc, document = cli("labels", "classify", "--collection", name, "--id", item, "-k", "0")
    assert rc == 2, document
    assert document["error"] == {
        "code": "USAGE",
        "message": "-k must be at least 1 (classes shown per image; default 3), got 0",
    }


@pytest.mark.database_free
def test_help_states_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    def help_text(*argv: str) -> str:
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0
        return " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal

    assert "how many items to suggest, at least 1 (default 10)" in help_text("labels", "suggest")
    assert "(default: per depth, edges 0.996, parts 0.955, semantics 0.83" in help_text(
        "duplicates"
    )
    assert "classes shown per image, at least 1 (default 3)" in help_text("labels", "classify")


def test_client_suggest_labels_refuses_n_0(
    client: StrataClient, indexed: tuple[str, dict[str, int]]
) -> None:
    name, _ = indexed
    client.clear_labels(name)  # every item a candidate
    with pytest.raises(ValueError, match="n must be at least 1"):
        client.suggest_labels(name, 0)
    assert len(client.suggest_labels(name, 2).suggestions) == 2


# -- one human label per class --------------------------------------------------------------


def test_one_label_per_class_says_what_is_missing(
    client: StrataClient,
    cli: Callable[..., tuple[int, Any]],
    indexed: tuple[str, dict[str, int]],
    examples: list[tuple[str, bytes, str]],
) -> None:
    name, _ = indexed
    _one_label_per_class(client, indexed, examples)
    classes = len(CROP_CLASSES)
    calls: list[Callable[[], object]] = [
        lambda: client.probe(name),
        lambda: client.predict_labels(name, dry_run=True),
        lambda: client.label_issues(name),
    ]
    for call in calls:
        with pytest.raises(StrataClientError) as refused:
            call()
        assert refused.value.code == "FAILED_PRECONDITION"
        message = refused.value.message
        assert "needs 2 human-labelled items in at least one class" in message, message
        assert f"found {classes} labelled items in {classes} classes, one each" in message
        assert message.endswith("label one more item of any class"), message
        assert "strata labels set" in refused.value.hint
    rc, document = cli("labels", "predict", "--collection", name, "--dry-run")
    assert rc == 1 and document["error"]["code"] == "FAILED_PRECONDITION"
    assert "one each: label one more item of any class" in document["error"]["message"]

    # One class, and no labels: the other two ways to have too few, each said as it is.
    client.clear_labels(name)
    with pytest.raises(StrataClientError) as none:
        client.probe(name)
    assert none.value.message.endswith(
        "needs human labels of at least 2 classes; found no labelled items"
    )
    cat = [i for u, i in indexed[1].items() if "/cat/" in u]
    client.set_labels(name, {i: "cat" for i in cat})
    with pytest.raises(StrataClientError) as one_class:
        client.probe(name)
    assert (
        f"needs human labels of at least 2 classes; found {len(cat)} labelled items, all of one "
        "class: label items of another class"
    ) in one_class.value.message


# -- CSV import -----------------------------------------------------------------------------


def test_import_counts_only_the_items_it_wrote(
    client: StrataClient,
    cli: Callable[..., tuple[int, Any]],
    indexed: tuple[str, dict[str, int]],
    examples: list[tuple[str, bytes, str]],
    tmp_path: Path,
) -> None:
    name, _ = indexed
    human = _one_label_per_class(client, indexed, examples)
    labelled = next(iter(human))
    unlabelled = next(i for i in indexed[1].values() if i not in human)

    # A predicted row for an item with a human label is not written, so not counted.
    csv = f"id,label,source,confidence\n{labelled},robot,predicted,0.5\n"
    result = client.import_labels(name, csv)
    assert (result.items, result.labels) == (0, 0)
    path = tmp_path / "predicted.csv"
    path.write_text(csv)
    assert cli("labels", "import", str(path), "--collection", name) == (
        0,
        {"items": 0, "labels": 0},
    )
    # Next to a row that is written, only that one counts.
    csv += f"{unlabelled},robot,predicted,0.5\n"
    result = client.import_labels(name, csv)
    assert (result.items, result.labels) == (1, 1)
    stored = {(x.id, x.label, x.source) for x in client.export_labels(name).labels}
    assert (labelled, human[labelled], "human") in stored
    assert (unlabelled, "robot", "predicted") in stored
    assert not any(i == labelled and source == "predicted" for i, _, source in stored)


@pytest.mark.parametrize("bad", ["-3", "0", "1.5", "+4"])
def test_import_says_an_id_that_is_not_a_positive_whole_number_is_not_an_item_id(
    client: StrataClient, indexed: tuple[str, dict[str, int]], bad: str
) -> None:
    name, _ = indexed
    with pytest.raises(StrataClientError) as refused:
        client.import_labels(name, f"id,label\n{bad},cat\n")
    assert refused.value.code == "INVALID_ARGUMENT"
    assert refused.value.message == (
        f"CSV line 2: '{bad}' is not a valid item id (ids are positive whole numbers)"
    )
    assert "--by uri" in refused.value.hint


def test_the_export_of_an_unlabelled_collection_imports_back_as_nothing(
    client: StrataClient, indexed: tuple[str, dict[str, int]]
) -> None:
    """A header without rows is what `labels export` writes when nothing is labelled."""
    name, _ = indexed
    client.clear_labels(name, None)
    exported = client.export_labels(name)
    csv_text = "id,uri,label,source,confidence\n"
    assert list(exported.labels) == []
    answer = client.import_labels(name, csv_text)
    assert (answer.items, answer.labels) == (0, 0)
