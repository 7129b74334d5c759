"""Issue 13's listed defects, each through the running service (real gRPC, SQL, FAISS, Lite0):
same uri twice in one batch, ordinary races and bad input answered INTERNAL, quoted input
that broke the transport, labels AddImages stored but SetLabels refuses, CSV edge cases,
query vectors of tiny or huge (finite) values."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest

from service.client import ImageToAdd, StrataClient, StrataClientError
from service.generated.strata.v1 import labels_pb2
from service.generated.strata.v1 import strata_pb2 as pb

BAD_CODES = {"UNKNOWN", "INTERNAL"}


def refused(call: Callable[[], object]) -> StrataClientError:
    with pytest.raises(StrataClientError) as caught:
        call()
    return caught.value


# -- same uri twice in one batch ------------------------------------------------------------


def test_same_uri_twice_in_one_batch_ends_as_two_calls_would(
    client: StrataClient, collection: str, small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    (_, first), (_, second) = small_jpegs(2, seed=31)
    results = list(
        client.add_images(
            collection,
            [ImageToAdd("same.jpg", first, labels=["a"]), ImageToAdd("same.jpg", second)],
        )
    )
    assert [r.status for r in results] == ["added", "replaced"]
    assert results[1].id != results[0].id
    assert client.get_collection(collection).items == 1
    # The later content is what is stored: it finds itself first.
    hits = client.search(collection, [second], k=1)[0]
    assert [h.id for h in hits.results[0].hits] == [results[1].id]
    # Sent in two calls, the same outcome: replaced with the first's labels carried over.
    item = client.get_item(collection, results[1].id)
    assert [label.label for label in item.labels] == ["a"]


def test_same_content_twice_in_one_batch_is_unchanged_the_second_time(
    client: StrataClient, collection: str, small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    ((_, data),) = small_jpegs(1, seed=32)
    results = list(
        client.add_images(collection, [ImageToAdd("x.jpg", data), ImageToAdd("x.jpg", data)])
    )
    assert [r.status for r in results] == ["added", "unchanged"]
    assert results[0].id == results[1].id
    assert client.get_collection(collection).items == 1


# -- races: the collection deleted mid-call -----------------------------------------------


def test_collection_deleted_during_add_images_is_not_found_not_internal(
    client: StrataClient, small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    images = small_jpegs(60, seed=33)
    for attempt in range(4):
        name = f"race-{attempt}"
        client.create_collection(name)
        outcome: list[object] = []

        def add(name: str = name, outcome: list[object] = outcome) -> None:
            try:
                outcome.extend(client.add_images(name, [ImageToAdd(u, d) for u, d in images]))
            except StrataClientError as exc:
                outcome.append(exc)

        worker = threading.Thread(target=add)
        worker.start()
        threading.Event().wait(0.3 + 0.3 * attempt)
        client.delete_collection(name)
        worker.join(120)
        errors = [o for o in outcome if isinstance(o, StrataClientError)]
        for error in errors:
            assert error.code in {"NOT_FOUND", "ABORTED"}, error
            assert name in error.details, error
        failed = [o for o in outcome if isinstance(o, pb.AddImageResult) and o.status == "failed"]
        for result in failed:
            assert result.error.code in {"NOT_FOUND", "ABORTED"}, result


# -- bad input answered with a status that names it ---------------------------------------


@pytest.fixture
def labelled(
    client: StrataClient, collection: str, small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> str:
    images = small_jpegs(12, seed=34)
    sent = [ImageToAdd(u, d, labels=["ab"[i % 2]]) for i, (u, d) in enumerate(images)]
    assert all(r.status == "added" for r in client.add_images(collection, sent))
    return collection


def test_negative_seed_is_invalid_argument(client: StrataClient, labelled: str) -> None:
    error = refused(lambda: client.probe(labelled, folds=2, seed=-1))
    assert error.code == "INVALID_ARGUMENT", error
    assert "seed" in error.details
    error = refused(lambda: client.predict_labels(labelled, folds=2, seed=-5, dry_run=True))
    assert error.code == "INVALID_ARGUMENT", error


def test_ensemble_alone_with_one_depth_is_invalid_argument(
    client: StrataClient, labelled: str
) -> None:
    try:
        response = client.predict_labels(
            labelled, depths=["semantics"], methods=["ensemble"], folds=2, dry_run=True
        )
    except StrataClientError as error:
        assert error.code == "INVALID_ARGUMENT", error
        assert "ensemble" in error.details
    else:
        assert response is not None


def test_a_thousand_metadata_filter_keys_is_invalid_argument(
    client: StrataClient, labelled: str
) -> None:
    metadata = {f"k{i}": "v" for i in range(1200)}
    item_id = client.export_labels(labelled).labels[0].id
    error = refused(lambda: client.search(labelled, [item_id], metadata=metadata))
    assert error.code == "INVALID_ARGUMENT", error
    assert "metadata" in error.details


def test_long_names_are_quoted_cut_and_stay_invalid_argument(client: StrataClient) -> None:
    name = "n" * 20_000
    error = refused(lambda: client.get_collection(name))
    assert error.code in {"INVALID_ARGUMENT", "NOT_FOUND"}, error
    assert len(error.details) < 1000
    assert "20,000 characters" in error.details


@pytest.mark.parametrize(
    "label",
    ["", "   ", "a\x00b", "x" * 1_000_000],
    ids=["empty", "whitespace", "nul", "1MB"],
)
def test_add_images_refuses_labels_that_set_labels_refuses(
    client: StrataClient,
    collection: str,
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
    label: str,
) -> None:
    ((uri, data),) = small_jpegs(1, seed=35)
    (result,) = client.add_images(collection, [ImageToAdd(uri, data, labels=[label])])
    assert result.status == "failed", result
    assert result.error.code == "INVALID_ARGUMENT"
    assert "label" in result.error.message
    assert client.get_collection(collection).items == 0


@pytest.mark.parametrize(
    ("csv", "words"),
    [
        ("id,label\n²,cat\n", ["line 2", "id"]),
        (f"id,label\n{2**63},cat\n", ["line 2", "id"]),
        ("uri,label\nphotos/x.jpg," + "c" * 140_000 + "\n", ["131,072"]),
        ("uri,label,source,confidence\nphotos/x.jpg,cat,predicted,nan\n", ["confidence"]),
        ("uri,label,source,confidence\nphotos/x.jpg,cat,predicted,-0.5\n", ["confidence"]),
    ],
    ids=["superscript-id", "id-2^63", "huge-field", "nan-confidence", "negative-confidence"],
)
def test_malformed_csv_rows_are_invalid_argument(
    client: StrataClient, labelled: str, csv: str, words: list[str]
) -> None:
    error = refused(lambda: client.import_labels(labelled, csv))
    assert error.code == "INVALID_ARGUMENT", error
    for word in words:
        assert word in error.details, error.details


def test_csv_with_a_bom_imports(client: StrataClient, labelled: str) -> None:
    uris = [row.uri for row in client.export_labels(labelled).labels][:2]
    text = "\ufeffuri,label\n" + "".join(f"{u},bom\n" for u in uris)
    result = client.import_labels(labelled, text)
    assert result.items == len(uris)


@pytest.mark.parametrize("scale", [1e-30, 1e30])
def test_finite_tiny_or_huge_query_vectors_are_searched(
    client: StrataClient, labelled: str, scale: float
) -> None:
    collection = client.get_collection(labelled)
    semantics = next(d for d in collection.depths if d.name == "semantics")
    rng = np.random.default_rng(0)
    vector = (rng.random(semantics.dim) * scale).astype(np.float32).tolist()
    (result,) = client.search(labelled, [vector], depths=["semantics"], k=3)
    assert len(result.results[0].hits) == 3


def test_nan_query_vector_is_still_refused(client: StrataClient, labelled: str) -> None:
    collection = client.get_collection(labelled)
    dim = next(d.dim for d in collection.depths if d.name == "semantics")
    error = refused(lambda: client.search(labelled, [[float("nan")] * dim], depths=["semantics"]))
    assert error.code == "INVALID_ARGUMENT"


def test_labels_service_has_a_health_entry(client: StrataClient) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(client.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        name = labels_pb2.DESCRIPTOR.services_by_name["Labels"].full_name
        response = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_list_backbones_shows_no_absolute_server_paths(client: StrataClient) -> None:
    for backbone in client.list_backbones():
        text = str(backbone)
        assert "/work/" not in text and "/root/" not in text and "/home/" not in text, text


# -- security: SQL metacharacters and the server's own disk ---------------------------------

SQL_NASTY = [
    "x'; DROP TABLE items; --",
    'a" OR "1"="1',
    "%_\\",
    "'); DELETE FROM labels WHERE ('1'='1",
    "Robert'); DROP TABLE collections;--",
]


def test_sql_metacharacters_in_every_string_field_are_plain_data(
    client: StrataClient, collection: str, small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    images = small_jpegs(len(SQL_NASTY), seed=36)
    sent = [
        ImageToAdd(f"{nasty}/{i}", data, labels=[nasty], metadata={nasty: nasty, "k": nasty})
        for i, (nasty, (_, data)) in enumerate(zip(SQL_NASTY, images, strict=True))
    ]
    results = list(client.add_images(collection, sent))
    assert [r.status for r in results] == ["added"] * len(sent), results
    for nasty, result in zip(SQL_NASTY, results, strict=True):
        item = client.get_item(collection, result.id)
        assert item.uri.startswith(nasty)
        assert [label.label for label in item.labels] == [nasty]
        assert dict(item.metadata) == {nasty: nasty, "k": nasty}
        # Filters on those values find exactly that item (no pattern, no injection).
        hits = client.search(
            collection, [result.id], k=10, labels_any=[nasty], metadata={"k": nasty}
        )[0]
        assert {h.id for depth in hits.results for h in depth.hits} == {result.id}, nasty
    # Labels by SetLabels and CSV import, and the collection name, take them as data too.
    client.set_labels(collection, {results[0].id: [SQL_NASTY[1]]})
    csv_text = "id,label\n" + "".join(
        f'{r.id},"{n.replace(chr(34), chr(34) * 2)}"\n'
        for r, n in zip(results, SQL_NASTY, strict=True)
    )
    assert client.import_labels(collection, csv_text).items == len(results)
    exported = {row.label for row in client.export_labels(collection).labels}
    assert set(SQL_NASTY) <= exported
    error = refused(lambda: client.create_collection(SQL_NASTY[0]))
    assert error.code == "INVALID_ARGUMENT"
    assert client.get_collection(collection).items == len(sent)  # every table still there


def test_a_uri_naming_a_server_file_is_never_read(client: StrataClient, collection: str) -> None:
    # The uri is a name: the bytes come from the request. Empty bytes with a uri of a file
    # that exists on the server is refused as an empty image, not filled from disk.
    (result,) = client.add_images(collection, [ImageToAdd("/etc/passwd", b"")])
    assert result.status == "failed" and result.error.code == "INVALID_ARGUMENT"
    error = refused(
        lambda: client.search(collection, [pb.Query(name="/etc/hostname", image=b"")], k=1)
    )
    assert error.code == "INVALID_ARGUMENT"
