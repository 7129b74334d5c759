"""The strata.v1 gRPC API end to end: real server on localhost, real SQL, FAISS and Lite0.

Every test works in its own collection on the shared server, and every error case checks
the status code, that the message names the culprit, and that the server still serves.
"""

from __future__ import annotations

import queue
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import image_samples as samples
import numpy as np
import pytest
from conftest import ServerHandle
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from photos import photo, photo_crops, photo_jpeg, png

from indexer.imaging.decode import content_hash
from service.client import ImageToAdd, StrataClient, StrataClientError
from service.generated.strata.v1 import strata_pb2 as pb
from service.generated.strata.v1 import strata_pb2_grpc as pb_grpc

PRESETS = ("edges", "parts", "semantics")
CAT_CLASSES = {"tiger cat", "tabby", "Egyptian cat"}


# -- helpers -------------------------------------------------------------------------------


def expect_error(code: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """Run `call`, which must fail with gRPC status `code`; returns the status details."""
    with pytest.raises(StrataClientError) as caught:
        result = call(*args, **kwargs)
        if isinstance(result, Iterator):
            list(result)
    assert caught.value.code == code, caught.value
    assert caught.value.details, "an error must say what went wrong"
    return caught.value.details


def assert_serving(server: ServerHandle, client: StrataClient) -> None:
    """The server still answers health checks and ordinary calls after an error."""
    with grpc.insecure_channel(server.address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=30
        )
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    assert isinstance(client.list_collections(), list)


def fresh_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_collection(client: StrataClient) -> Iterator[Callable[..., pb.Collection]]:
    """Create collections with any options; each is deleted after the test."""
    made: list[str] = []

    def make(**options: Any) -> pb.Collection:
        name = fresh_name()
        created = client.create_collection(name, **options)
        made.append(name)
        return created

    yield make
    for name in made:
        try:
            client.delete_collection(name)
        except StrataClientError as exc:
            if exc.code != "NOT_FOUND":  # the test may have deleted it itself
                raise


def add(client: StrataClient, collection: str, *images: ImageToAdd) -> list[pb.AddImageResult]:
    return list(client.add_images(collection, images))


def add_photos(client: StrataClient, collection: str, *names: str) -> dict[str, int]:
    """Add skimage photos as `<name>.jpg`; returns uri -> item id."""
    results = add(client, collection, *(ImageToAdd(f"{n}.jpg", photo_jpeg(n)) for n in names))
    assert [r.status for r in results] == ["added"] * len(names), results
    return {r.uri: r.id for r in results}


def hits_by_depth(result: pb.QueryResult) -> dict[str, list[pb.Hit]]:
    return {d.depth: list(d.hits) for d in result.results}


@pytest.fixture(scope="module")
def preset_layers(server: ServerHandle) -> dict[str, pb.Layer]:
    """Lite0's preset depth -> its layer, as the server lists them."""
    with server.client(timeout=300) as c:
        layers = c.list_layers().layers
    return {preset: layer for layer in layers for preset in layer.presets}


# -- health, reflection, backbones ---------------------------------------------------------


def test_health_reports_serving_for_server_and_service(server: ServerHandle) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "strata.v1.Strata"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_the_service(server: ServerHandle) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="strata.v1.Strata"),
        ]
        listed, described = list(stub.ServerReflectionInfo(iter(requests), timeout=30))
    names = {s.name for s in listed.list_services_response.service}
    assert {"strata.v1.Strata", "grpc.health.v1.Health"} <= names
    assert described.file_descriptor_response.file_descriptor_proto, described


def test_reflection_answers_as_v1_too(server: ServerHandle) -> None:
    """grpcurl and other current clients ask grpc.reflection.v1 first; v1 describes the
    service and itself in v1's own package."""
    v1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
    with grpc.insecure_channel(server.address) as channel:
        info = channel.stream_stream(
            v1,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol="strata.v1.Labels"),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="grpc.reflection.v1.ServerReflection"
            ),
        ]
        listed, labels, itself = list(info(iter(requests), timeout=30))
    names = {s.name for s in listed.list_services_response.service}
    assert {"strata.v1.Strata", "strata.v1.Labels", "grpc.reflection.v1.ServerReflection"} <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in labels.file_descriptor_response.file_descriptor_proto
    ]
    assert any(f.package == "strata.v1" and "Labels" in [x.name for x in f.service] for f in files)
    (own,) = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in itself.file_descriptor_response.file_descriptor_proto
    ]
    assert own.package == "grpc.reflection.v1", own.name
    (method,) = own.service[0].method
    assert method.input_type == ".grpc.reflection.v1.ServerReflectionRequest"
    assert method.client_streaming and method.server_streaming


def test_list_backbones_reports_weights(client: StrataClient) -> None:
    backbones = {b.name: b for b in client.list_backbones()}
    assert {
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "alexnet",
        "vgg16",
        "resnet50",
        "inception_v3",
        "mobilenet_v3_large",
    } == set(backbones)
    lite0 = backbones["efficientnet_lite0"]
    assert lite0.weights_available and lite0.input_size == 224
    assert set(lite0.presets) == set(PRESETS)
    for backbone in backbones.values():
        assert backbone.weights_hint, backbone.name  # a path, or how to install the weights


def test_list_layers_default_and_unknown_backbone(
    server: ServerHandle, client: StrataClient
) -> None:
    response = client.list_layers()
    assert response.backbone == "efficientnet_lite0"
    presets = {p: layer.name for layer in response.layers for p in layer.presets}
    assert presets == {"edges": "blocks.1", "parts": "blocks.4", "semantics": "global_pool"}
    assert all(layer.channels > 0 for layer in response.layers)
    details = expect_error("NOT_FOUND", client.list_layers, "no_such_net")
    assert "no_such_net" in details and "efficientnet_lite0" in details
    assert_serving(server, client)


# -- collections ---------------------------------------------------------------------------


def test_create_collection_defaults(
    client: StrataClient, make_collection: Callable[..., pb.Collection], preset_layers: dict
) -> None:
    created = make_collection()
    assert created.backbone == "efficientnet_lite0"
    assert created.pooling == "avg"
    assert [d.name for d in created.depths] == list(PRESETS)
    for depth in created.depths:
        assert depth.layer == preset_layers[depth.name].name
        assert depth.dim == preset_layers[depth.name].channels
        assert depth.vectors == 0
    assert created.items == 0
    assert client.get_collection(created.name) == created


@pytest.mark.parametrize("pooling", ["gem", "max"])
def test_create_collection_with_pooling_and_raw_layer(
    client: StrataClient, make_collection: Callable[..., pb.Collection], pooling: str
) -> None:
    layers = {layer.name: layer for layer in client.list_layers().layers}
    created = make_collection(depths=["blocks.3", "semantics"], pooling=pooling)
    assert created.pooling == pooling
    assert [(d.name, d.layer, d.dim) for d in created.depths] == [
        ("blocks.3", "blocks.3", layers["blocks.3"].channels),
        ("semantics", "global_pool", layers["global_pool"].channels),
    ]
    ids = add_photos(client, created.name, "chelsea", "coffee")
    [result] = client.search(created.name, [photo_jpeg("coffee")], depths=["blocks.3"], k=2)
    assert hits_by_depth(result)["blocks.3"][0].id == ids["coffee.jpg"]


def test_list_get_and_delete_collection(
    server: ServerHandle, client: StrataClient, make_collection: Callable[..., pb.Collection]
) -> None:
    empty = make_collection(depths=["semantics"])
    full = make_collection()
    add_photos(client, full.name, "chelsea", "coffee", "astronaut")

    listed = {c.name: c for c in client.list_collections()}
    assert listed[empty.name].items == 0
    assert {d.name: d.vectors for d in listed[empty.name].depths} == {"semantics": 0}
    assert listed[full.name].items == 3
    assert {d.name: d.vectors for d in listed[full.name].depths} == dict.fromkeys(PRESETS, 3)
    shown = client.get_collection(full.name)
    # The live index's size, level with SQL after ingest, in a listing as in `show`.
    assert {d.name: d.index_vectors for d in shown.depths} == dict.fromkeys(PRESETS, 3)
    assert shown == listed[full.name]

    client.delete_collection(full.name)
    assert full.name not in {c.name for c in client.list_collections()}
    assert full.name in expect_error("NOT_FOUND", client.get_collection, full.name)
    expect_error("NOT_FOUND", client.delete_collection, full.name)
    expect_error("NOT_FOUND", client.search, full.name, [photo_jpeg("coffee")])
    # The name is free again, and the new collection starts empty.
    client.create_collection(full.name)
    try:
        again = client.get_collection(full.name)
        assert again.items == 0 and all(d.vectors == 0 for d in again.depths)
        [result] = client.search(full.name, [photo_jpeg("coffee")])
        assert all(hits == [] for hits in hits_by_depth(result).values())
    finally:
        client.delete_collection(full.name)
    assert_serving(server, client)


def test_duplicate_collection_name_already_exists(
    server: ServerHandle, client: StrataClient, make_collection: Callable[..., pb.Collection]
) -> None:
    created = make_collection(depths=["edges"])
    details = expect_error("ALREADY_EXISTS", client.create_collection, created.name)
    assert created.name in details
    # The original is untouched.
    assert [d.name for d in client.get_collection(created.name).depths] == ["edges"]
    assert_serving(server, client)


@pytest.mark.parametrize(
    "name", ["", "has space", "-leading-dash", "slash/inside", "x" * 129, "ünïcode"]
)
def test_bad_collection_name_invalid_argument(
    server: ServerHandle, client: StrataClient, name: str
) -> None:
    details = expect_error("INVALID_ARGUMENT", client.create_collection, name)
    assert "name" in details
    assert name not in {c.name for c in client.list_collections()}
    assert_serving(server, client)


@pytest.mark.parametrize(
    ("options", "code", "mentions"),
    [
        ({"pooling": "median"}, "INVALID_ARGUMENT", "median"),
        ({"depths": [" ", ""]}, "INVALID_ARGUMENT", "depth"),
        ({"backbone": "no_such_net"}, "NOT_FOUND", "no_such_net"),
        ({"depths": ["edges", "blocks.99"]}, "NOT_FOUND", "blocks.99"),
        ({"depths": ["not_a_layer"]}, "NOT_FOUND", "not_a_layer"),
    ],
)
def test_bad_collection_options(
    server: ServerHandle, client: StrataClient, options: dict, code: str, mentions: str
) -> None:
    name = fresh_name()
    details = expect_error(code, client.create_collection, name, **options)
    assert mentions in details
    assert name not in {c.name for c in client.list_collections()}
    assert_serving(server, client)


def test_backbone_without_weights_failed_precondition(
    server: ServerHandle,
    client: StrataClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server runs in this process: point torchvision's cache at an empty folder so
    # the check does not depend on what this machine happens to have downloaded.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("STRATA_WEIGHTS_DIR", raising=False)
    name = fresh_name()
    details = expect_error("FAILED_PRECONDITION", client.create_collection, name, "resnet50")
    assert "resnet50-11ad3fa6.pth" in details  # the file ...
    assert str(tmp_path / "hub" / "checkpoints") in details  # ... and where to put it
    assert "random weights are never served" in details
    assert name not in {c.name for c in client.list_collections()}
    expect_error(
        "FAILED_PRECONDITION", client.classify, [("c", photo_jpeg("chelsea"))], backbone="resnet50"
    )
    assert_serving(server, client)


# -- adding images -------------------------------------------------------------------------


def test_add_images_streams_one_result_per_image_in_order(
    server: ServerHandle, client: StrataClient, collection: str
) -> None:
    good = {f"good/{n}.jpg": photo_jpeg(n) for n in ("chelsea", "coffee", "astronaut")}
    good["good/rocket.png"] = png(photo("rocket"))
    hostile = {f"bad/{n}": build() for n, build in samples.HOSTILE.items()}
    # Interleave so a bad image between good ones must not shift or sink anything.
    good_items, bad_items = list(good.items()), list(hostile.items())
    sent: list[tuple[str, bytes]] = []
    for position in range(max(len(good_items), len(bad_items))):
        sent.extend(bad_items[position : position + 1])
        sent.extend(good_items[position : position + 1])

    results = add(client, collection, *(ImageToAdd(uri, data) for uri, data in sent))

    assert [r.uri for r in results] == [uri for uri, _ in sent]
    for result in results:
        if result.uri in good:
            assert result.status == "added" and result.id > 0, result
            assert not result.error.code
        else:
            name = result.uri.removeprefix("bad/")
            assert result.status == "failed" and result.id == 0, result
            assert result.error.code == "INVALID_ARGUMENT", result
            assert result.uri in result.error.message  # names the image ...
            assert samples.HOSTILE_REASON[name] in result.error.message.lower()  # ... and why
            assert result.error.hint, result
    ids = [r.id for r in results if r.uri in good]
    assert len(set(ids)) == len(good)
    info = client.get_collection(collection)
    assert info.items == len(good)
    assert {d.name: d.vectors for d in info.depths} == dict.fromkeys(PRESETS, len(good))
    for uri, data in good.items():
        [result] = client.search(collection, [data], depths=["semantics"], k=1)
        assert hits_by_depth(result)["semantics"][0].uri == uri
    assert_serving(server, client)


def test_add_images_big_stream_spans_batches(client: StrataClient, collection: str) -> None:
    crops = photo_crops(40)  # more than one server batch (32)
    results = add(client, collection, *(ImageToAdd(uri, data) for uri, data in crops))
    assert [(r.uri, r.status) for r in results] == [(uri, "added") for uri, _ in crops]
    assert client.get_collection(collection).items == len(crops)


def test_add_images_refuses_empty_uri_alone(client: StrataClient, collection: str) -> None:
    results = add(
        client,
        collection,
        ImageToAdd("", photo_jpeg("chelsea")),
        ImageToAdd("coffee.jpg", photo_jpeg("coffee")),
    )
    assert [r.status for r in results] == ["failed", "added"]
    assert results[0].error.code == "INVALID_ARGUMENT" and "uri" in results[0].error.message


def test_add_images_stream_errors(
    server: ServerHandle, client: StrataClient, collection: str, make_collection: Callable
) -> None:
    image = ImageToAdd("chelsea.jpg", photo_jpeg("chelsea"))
    details = expect_error("NOT_FOUND", client.add_images, "no-such-collection", [image])
    assert "no-such-collection" in details

    # A stream whose first message names no collection.
    stub = client.stub
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.AddImages(iter([pb.AddImageRequest(uri="a.jpg", image=image.data)]), timeout=60))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "collection" in caught.value.details()

    # A later message naming another collection fails alone.
    other = make_collection(depths=["edges"])
    requests = [
        pb.AddImageRequest(collection=collection, uri="a.jpg", image=image.data),
        pb.AddImageRequest(collection=other.name, uri="b.jpg", image=photo_jpeg("coffee")),
        pb.AddImageRequest(uri="c.jpg", image=photo_jpeg("astronaut")),
    ]
    results = list(stub.AddImages(iter(requests), timeout=120))
    assert [r.status for r in results] == ["added", "failed", "added"]
    assert results[1].error.code == "INVALID_ARGUMENT" and "b.jpg" in results[1].error.message
    assert client.get_collection(other.name).items == 0
    assert client.get_collection(collection).items == 2
    assert_serving(server, client)


def test_readding_same_content_is_unchanged(client: StrataClient, collection: str) -> None:
    data = photo_jpeg("chelsea")
    [first] = add(client, collection, ImageToAdd("cat.jpg", data))
    assert first.status == "added"
    # Again, and twice within one stream.
    again = add(client, collection, ImageToAdd("cat.jpg", data), ImageToAdd("cat.jpg", data))
    assert [(r.status, r.id) for r in again] == [("unchanged", first.id)] * 2
    info = client.get_collection(collection)
    assert info.items == 1 and all(d.vectors == 1 for d in info.depths)
    # The same content under another uri is another item.
    [copy] = add(client, collection, ImageToAdd("copy-of-cat.jpg", data))
    assert copy.status == "added" and copy.id != first.id


def test_readding_with_labels_or_metadata_adds_them(client: StrataClient, collection: str) -> None:
    """`strata index` run again with --labels-from-folders or --meta: the images are
    unchanged, and what was sent with them is added (labels join the human ones and end
    the predicted one; a key takes the value sent), so neither is silently dropped."""
    cat, cup = photo_jpeg("chelsea"), photo_jpeg("coffee")
    [first] = add(client, collection, ImageToAdd("photo.jpg", cat))
    client.import_labels(collection, f"id,label,source,confidence\n{first.id},dog,predicted,0.6\n")

    def annotations(item_id: int) -> tuple[list[tuple[str, str]], dict[str, str]]:
        item = client.get_item(collection, item_id)
        return sorted((x.label, x.source) for x in item.labels), dict(item.metadata)

    assert annotations(first.id) == ([("dog", "predicted")], {})
    [again] = add(client, collection, ImageToAdd("photo.jpg", cat, ["cat"], {"room": "den"}))
    assert (again.status, again.id) == ("unchanged", first.id)
    assert annotations(first.id) == ([("cat", "human")], {"room": "den"})
    [again] = add(
        client, collection, ImageToAdd("photo.jpg", cat, ["pet", "cat"], {"room": "hall"})
    )
    assert annotations(first.id) == ([("cat", "human"), ("pet", "human")], {"room": "hall"})
    add(client, collection, ImageToAdd("photo.jpg", cat))  # sends none: changes none
    assert annotations(first.id) == ([("cat", "human"), ("pet", "human")], {"room": "hall"})
    # New content: the item's labels and metadata carry over, with what was sent added.
    [replaced] = add(client, collection, ImageToAdd("photo.jpg", cup, ["mug"], {"k": "v"}))
    assert replaced.status == "replaced"
    assert annotations(replaced.id) == (
        [("cat", "human"), ("mug", "human"), ("pet", "human")],
        {"room": "hall", "k": "v"},
    )


def test_new_content_at_same_uri_replaces(
    server: ServerHandle, client: StrataClient, collection: str
) -> None:
    """New content at a known uri replaces the item. By design (indexer/ingest.py) the
    replacement gets a new id, so an id never changes its vectors; labels and metadata
    carry over and the old id is gone everywhere."""
    cat, cup = photo_jpeg("chelsea"), photo_jpeg("coffee")
    [other] = add(client, collection, ImageToAdd("astronaut.jpg", photo_jpeg("astronaut")))
    [first] = add(client, collection, ImageToAdd("photo.jpg", cat, ["pet"], {"room": "den"}))

    [second] = add(client, collection, ImageToAdd("photo.jpg", cup))
    assert second.status == "replaced" and second.uri == "photo.jpg"
    assert second.id not in (0, other.id)

    info = client.get_collection(collection)
    assert info.items == 2 and all(d.vectors == 2 for d in info.depths)
    item = client.get_item(collection, second.id)
    assert item.uri == "photo.jpg" and item.content_hash == content_hash(cup)
    assert (item.width, item.height) == photo("coffee").size
    assert [x.label for x in item.labels] == ["pet"] and dict(item.metadata) == {"room": "den"}
    if second.id != first.id:
        expect_error("NOT_FOUND", client.get_item, collection, first.id)
    # The stored vectors are the new picture's at every depth: the cup finds the item with
    # a perfect score, the cat no longer does, and no stale vector is left in any index.
    [by_cup] = client.search(collection, [cup], k=1)
    [by_cat] = client.search(collection, [cat], k=10)
    for depth in PRESETS:
        assert hits_by_depth(by_cup)[depth][0].id == second.id
        assert hits_by_depth(by_cup)[depth][0].score == pytest.approx(1.0, abs=1e-4)
        cat_hits = hits_by_depth(by_cat)[depth]
        assert sorted(h.id for h in cat_hits) == sorted([other.id, second.id]), depth
        assert max(h.score for h in cat_hits) < 0.999
    # Re-adding the new content is now a no-op.
    [again] = add(client, collection, ImageToAdd("photo.jpg", cup))
    assert (again.status, again.id) == ("unchanged", second.id)
    assert_serving(server, client)


def test_labels_and_metadata_are_stored(client: StrataClient, collection: str) -> None:
    data = photo_jpeg("chelsea")
    [result] = add(
        client,
        collection,
        ImageToAdd("pets/chelsea.jpg", data, ["cat", "pet", "cat"], {"camera": "x100", "k": ""}),
    )
    item = client.get_item(collection, result.id)
    assert item.id == result.id and item.uri == "pets/chelsea.jpg"
    assert item.content_hash == content_hash(data)
    assert (item.width, item.height) == photo("chelsea").size
    assert [(x.label, x.source) for x in item.labels] == [("cat", "human"), ("pet", "human")]
    assert dict(item.metadata) == {"camera": "x100", "k": ""}
    [found] = client.search(collection, [data], depths=["semantics"], k=1)
    hit = hits_by_depth(found)["semantics"][0]
    assert list(hit.labels) == ["cat", "pet"] and dict(hit.metadata) == dict(item.metadata)


def test_get_item_errors(server: ServerHandle, client: StrataClient, collection: str) -> None:
    ids = add_photos(client, collection, "chelsea")
    expect_error("NOT_FOUND", client.get_item, collection, max(ids.values()) + 1000)
    expect_error("NOT_FOUND", client.get_item, "no-such-collection", 1)
    # An id from another collection is not found in this one.
    other = fresh_name()
    client.create_collection(other, depths=["edges"])
    try:
        expect_error("NOT_FOUND", client.get_item, other, ids["chelsea.jpg"])
    finally:
        client.delete_collection(other)
    assert_serving(server, client)


def test_delete_items(server: ServerHandle, client: StrataClient, collection: str) -> None:
    ids = add_photos(client, collection, "chelsea", "coffee", "astronaut", "rocket")
    gone = [ids["coffee.jpg"], ids["rocket.jpg"]]
    assert sorted(client.delete_items(collection, gone)) == sorted(gone)

    info = client.get_collection(collection)
    assert info.items == 2 and all(d.vectors == 2 for d in info.depths)
    for item_id in gone:
        expect_error("NOT_FOUND", client.get_item, collection, item_id)
        expect_error("NOT_FOUND", client.search, collection, [item_id])
    # Never in results, not even for their own pictures or with k covering everything.
    for name in ("coffee", "rocket", "chelsea"):
        [result] = client.search(collection, [photo_jpeg(name)], k=100)
        for depth, hits in hits_by_depth(result).items():
            assert {h.id for h in hits} == {ids["chelsea.jpg"], ids["astronaut.jpg"]}, depth

    # Unknown ids: NOT_FOUND naming them, and nothing deleted.
    details = expect_error(
        "NOT_FOUND", client.delete_items, collection, [ids["chelsea.jpg"], 987654321]
    )
    assert "987654321" in details
    assert client.get_item(collection, ids["chelsea.jpg"]).uri == "chelsea.jpg"
    expect_error("NOT_FOUND", client.delete_items, collection, gone)  # already deleted
    assert client.get_collection(collection).items == 2
    assert_serving(server, client)


# -- search --------------------------------------------------------------------------------


@pytest.fixture
def filled(client: StrataClient, collection: str) -> tuple[str, dict[str, int]]:
    """A collection of 4 labelled photos and 10 crops: 14 items."""
    images = [
        ImageToAdd("chelsea.jpg", photo_jpeg("chelsea"), ["cat", "animal"], {"split": "a"}),
        ImageToAdd("coffee.jpg", photo_jpeg("coffee"), ["drink"], {"split": "a", "room": "k"}),
        ImageToAdd("astronaut.jpg", photo_jpeg("astronaut"), ["person"], {"split": "b"}),
        ImageToAdd("rocket.jpg", photo_jpeg("rocket"), [], {"split": "b", "room": "k"}),
    ] + [ImageToAdd(uri, data, ["crop"]) for uri, data in photo_crops(10)]
    results = add(client, collection, *images)
    assert all(r.status == "added" for r in results)
    return collection, {r.uri: r.id for r in results}


def test_search_by_image_finds_itself_at_every_depth(
    client: StrataClient, filled: tuple[str, dict[str, int]]
) -> None:
    collection, ids = filled
    names = ("chelsea", "coffee", "astronaut")
    results = client.search(collection, [photo_jpeg(n) for n in names], k=5)
    assert [r.query for r in results] == ["image 0", "image 1", "image 2"]
    for name, result in zip(names, results, strict=True):
        by_depth = hits_by_depth(result)
        assert list(by_depth) == list(PRESETS)
        for depth, hits in by_depth.items():
            assert len(hits) == 5
            assert hits[0].id == ids[f"{name}.jpg"] and hits[0].uri == f"{name}.jpg", depth
            assert hits[0].score == pytest.approx(1.0, abs=1e-4)
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            assert all(-1.0001 <= s <= 1.0001 for s in scores)


def test_search_by_item_id(
    client: StrataClient, filled: tuple[str, dict[str, int]], tmp_path: Path
) -> None:
    collection, ids = filled
    [by_id] = client.search(collection, [ids["coffee.jpg"]], k=3)
    [by_image] = client.search(collection, [photo_jpeg("coffee")], k=3)
    assert by_id.query == str(ids["coffee.jpg"])
    for depth in PRESETS:
        id_hits, image_hits = hits_by_depth(by_id)[depth], hits_by_depth(by_image)[depth]
        assert id_hits[0].id == ids["coffee.jpg"]
        assert [h.id for h in id_hits] == [h.id for h in image_hits]
        for a, b in zip(id_hits, image_hits, strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-4)
    # What scripts hold: an id from numpy, a path as a plain string.
    file = tmp_path / "coffee.jpg"
    file.write_bytes(photo_jpeg("coffee"))
    by_numpy, by_path = client.search(collection, [np.int64(ids["coffee.jpg"]), str(file)], k=3)
    assert by_numpy.query == str(ids["coffee.jpg"]) and by_path.query == str(file)
    for result in (by_numpy, by_path):
        assert [h.id for h in hits_by_depth(result)["semantics"]] == [
            h.id for h in hits_by_depth(by_image)["semantics"]
        ]
    with pytest.raises(TypeError, match="query 0 is a float"):
        client.search(collection, [0.5])  # type: ignore[list-item]


def test_search_by_raw_vector(
    server: ServerHandle, client: StrataClient, filled: tuple[str, dict[str, int]]
) -> None:
    collection, ids = filled
    [embedding] = client.embed([("q", photo_jpeg("astronaut"))], collection=collection)
    vectors = {v.depth: np.array(v.values, dtype=np.float32) for v in embedding.vectors}
    for depth, vector in vectors.items():
        # Any scale: the server normalises.
        [result] = client.search(collection, [list(vector * 3.0)], depths=[depth], k=2)
        assert result.query == "vector 0"
        [(got_depth, hits)] = hits_by_depth(result).items()
        assert got_depth == depth
        assert hits[0].id == ids["astronaut.jpg"]
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)

    semantics = list(vectors["semantics"])
    # Wrong size for the depth, no depth named, several depths, zero or non-finite vector.
    for call_kwargs in (
        {"queries": [semantics[:-1]], "depths": ["semantics"]},
        {"queries": [semantics], "depths": ["edges"]},
        {"queries": [semantics]},
        {"queries": [semantics], "depths": ["semantics", "parts"]},
        {"queries": [[0.0] * len(semantics)], "depths": ["semantics"]},
        {"queries": [[float("nan")] * len(semantics)], "depths": ["semantics"]},
    ):
        details = expect_error("INVALID_ARGUMENT", client.search, collection, **call_kwargs)
        assert "vector" in details, call_kwargs
    assert_serving(server, client)


def test_search_one_or_several_depths(
    client: StrataClient, filled: tuple[str, dict[str, int]]
) -> None:
    collection, ids = filled
    query = [photo_jpeg("rocket")]
    [parts_only] = client.search(collection, query, depths=["parts"], k=3)
    assert list(hits_by_depth(parts_only)) == ["parts"]
    [two] = client.search(collection, query, depths=["semantics", "edges"], k=3)
    assert list(hits_by_depth(two)) == ["semantics", "edges"]
    [every] = client.search(collection, query, k=3)
    for depth in ("semantics", "edges"):
        assert [h.id for h in hits_by_depth(two)[depth]] == [
            h.id for h in hits_by_depth(every)[depth]
        ]
    assert hits_by_depth(parts_only)["parts"][0].id == ids["rocket.jpg"]
    details = expect_error("NOT_FOUND", client.search, collection, query, depths=["deepest"])
    assert "deepest" in details


def test_search_k_bounds(
    server: ServerHandle, client: StrataClient, filled: tuple[str, dict[str, int]]
) -> None:
    collection, ids = filled
    assert len(ids) > 10
    query = [ids["chelsea.jpg"]]
    [default] = client.search(collection, query, k=0)  # 0 means the default, 10
    assert all(len(hits) == 10 for hits in hits_by_depth(default).values())
    [three] = client.search(collection, query, k=3)
    assert all(len(hits) == 3 for hits in hits_by_depth(three).values())
    max_k = server.settings.max_k
    [everything] = client.search(collection, query, k=max_k)  # more than stored: all of them
    for hits in hits_by_depth(everything).values():
        assert sorted(h.id for h in hits) == sorted(ids.values())
    for bad_k in (max_k + 1, -1):
        details = expect_error("INVALID_ARGUMENT", client.search, collection, query, k=bad_k)
        assert str(bad_k) in details
    assert_serving(server, client)


def test_search_filters_on_labels_and_metadata(
    client: StrataClient, filled: tuple[str, dict[str, int]]
) -> None:
    collection, ids = filled
    crops = {i for uri, i in ids.items() if uri.startswith("crop/")}
    cases = [
        ({"labels_any": ["cat"]}, {ids["chelsea.jpg"]}),
        ({"labels_any": ["cat", "drink"]}, {ids["chelsea.jpg"], ids["coffee.jpg"]}),
        ({"labels_any": ["crop"]}, crops),
        ({"metadata": {"split": "b"}}, {ids["astronaut.jpg"], ids["rocket.jpg"]}),
        ({"metadata": {"split": "a", "room": "k"}}, {ids["coffee.jpg"]}),
        ({"labels_any": ["drink", "person"], "metadata": {"room": "k"}}, {ids["coffee.jpg"]}),
        ({"labels_any": ["no-such-label"]}, set()),
        ({"metadata": {"split": "z"}}, set()),
    ]
    for where, expected in cases:
        # Query with a picture that is itself filtered out, so the filter must do the work.
        [result] = client.search(collection, [photo_jpeg("chelsea")], k=100, **where)
        for depth, hits in hits_by_depth(result).items():
            assert {h.id for h in hits} == expected, (where, depth)
    [few] = client.search(collection, [photo_jpeg("chelsea")], k=2, labels_any=["crop"])
    for hits in hits_by_depth(few).values():
        assert len(hits) == 2 and {h.id for h in hits} <= crops


def test_search_errors(
    server: ServerHandle, client: StrataClient, filled: tuple[str, dict[str, int]]
) -> None:
    collection, ids = filled
    assert "no-such-collection" in expect_error(
        "NOT_FOUND", client.search, "no-such-collection", [photo_jpeg("chelsea")]
    )
    for name, data in (("text", samples.text()), ("truncated", samples.truncated_jpeg())):
        query = pb.Query(name=f"query-{name}.jpg", image=data)
        details = expect_error("INVALID_ARGUMENT", client.search, collection, [query])
        assert f"query-{name}.jpg" in details
    assert "424242" in expect_error("NOT_FOUND", client.search, collection, [424242])
    expect_error("INVALID_ARGUMENT", client.search, collection, [])
    expect_error("INVALID_ARGUMENT", client.search, collection, [pb.Query(name="blank")])
    # The client splits long lists itself; the server's own limit, through the raw stub:
    too_many = [pb.Query(item_id=ids["chelsea.jpg"])] * (server.settings.max_images_per_request + 1)
    with pytest.raises(grpc.RpcError) as caught:
        client.stub.Search(pb.SearchRequest(collection=collection, queries=too_many), timeout=60)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    assert_serving(server, client)


# -- embed and classify ----------------------------------------------------------------------


def test_embed_vectors_are_unit_and_sized_by_layer(
    client: StrataClient, preset_layers: dict[str, pb.Layer]
) -> None:
    embeddings = client.embed([("cat", photo_jpeg("chelsea")), ("cup", photo_jpeg("coffee"))])
    assert [e.uri for e in embeddings] == ["cat", "cup"]
    for embedding in embeddings:
        assert not embedding.error.code
        assert [v.depth for v in embedding.vectors] == list(PRESETS)
        for vector in embedding.vectors:
            values = np.array(vector.values)
            assert len(values) == preset_layers[vector.depth].channels
            assert np.linalg.norm(values) == pytest.approx(1.0, abs=1e-5)
    cat, cup = (np.array(embeddings[i].vectors[2].values) for i in (0, 1))
    assert float(cat @ cup) < 0.9  # different pictures, different vectors


def test_embed_options_and_errors(server: ServerHandle, client: StrataClient) -> None:
    layers = {layer.name: layer.channels for layer in client.list_layers().layers}
    data = [("cat", photo_jpeg("chelsea"))]
    by_pooling = {}
    for pooling in ("avg", "max", "gem"):
        [e] = client.embed(data, depths=["blocks.3", "blocks.5"], pooling=pooling)
        assert [(v.depth, len(v.values)) for v in e.vectors] == [
            ("blocks.3", layers["blocks.3"]),
            ("blocks.5", layers["blocks.5"]),
        ]
        by_pooling[pooling] = np.array(e.vectors[0].values)
    assert not np.allclose(by_pooling["avg"], by_pooling["max"], atol=1e-3)
    assert not np.allclose(by_pooling["avg"], by_pooling["gem"], atol=1e-3)

    # A bad image fails alone.
    mixed = client.embed([("bad.jpg", samples.truncated_jpeg()), ("cup", photo_jpeg("coffee"))])
    assert mixed[0].error.code == "INVALID_ARGUMENT" and "bad.jpg" in mixed[0].error.message
    assert not mixed[0].vectors
    assert not mixed[1].error.code and len(mixed[1].vectors) == 3

    expect_error("NOT_FOUND", client.embed, data, backbone="no_such_net")
    expect_error("NOT_FOUND", client.embed, data, depths=["blocks.99"])
    expect_error("INVALID_ARGUMENT", client.embed, data, pooling="median")
    expect_error("NOT_FOUND", client.embed, data, collection="no-such-collection")
    assert_serving(server, client)


def test_embed_matches_stored_collection_vectors(
    client: StrataClient, make_collection: Callable[..., pb.Collection]
) -> None:
    created = make_collection(depths=["edges", "blocks.3", "semantics"], pooling="gem")
    ids = add_photos(client, created.name, "chelsea", "coffee", "astronaut")
    [embedding] = client.embed([("q", photo_jpeg("coffee"))], collection=created.name)
    assert [v.depth for v in embedding.vectors] == ["edges", "blocks.3", "semantics"]
    for vector in embedding.vectors:
        [result] = client.search(created.name, [list(vector.values)], depths=[vector.depth], k=1)
        top = hits_by_depth(result)[vector.depth][0]
        # Cosine 1 between unit vectors: the very vector the collection stored.
        assert top.id == ids["coffee.jpg"] and top.score == pytest.approx(1.0, abs=1e-5)
    # Embedding by collection uses its pooling (gem), not the default.
    [default] = client.embed([("q", photo_jpeg("coffee"))], depths=["blocks.3"])
    stored = np.array(embedding.vectors[1].values)
    assert not np.allclose(stored, np.array(default.vectors[0].values), atol=1e-3)


def test_classify_photos(server: ServerHandle, client: StrataClient) -> None:
    predictions = client.classify(
        [
            ("chelsea.jpg", photo_jpeg("chelsea")),
            ("broken.jpg", samples.truncated_jpeg()),
            ("coffee.jpg", photo_jpeg("coffee")),
        ],
        k=3,
    )
    assert [p.uri for p in predictions] == ["chelsea.jpg", "broken.jpg", "coffee.jpg"]
    cat, broken, cup = predictions
    assert cat.top[0].label in CAT_CLASSES, cat
    assert cup.top[0].label == "espresso", cup
    for prediction in (cat, cup):
        scores = [t.score for t in prediction.top]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert 0 < sum(scores) <= 1.0001
    assert broken.error.code == "INVALID_ARGUMENT" and "broken.jpg" in broken.error.message
    assert not broken.top
    [default_k] = client.classify([("cup", photo_jpeg("coffee"))], k=0)
    assert len(default_k.top) == 5
    expect_error("INVALID_ARGUMENT", client.classify, [("cup", photo_jpeg("coffee"))], k=1001)
    expect_error("NOT_FOUND", client.classify, [("cup", photo_jpeg("coffee"))], backbone="x")
    assert_serving(server, client)


def test_request_without_collection_is_not_unknown(
    server: ServerHandle, client: StrataClient
) -> None:
    """Empty or default-valued requests get a real status, never UNKNOWN or INTERNAL: the
    caller's mistake (INVALID_ARGUMENT), not a collection that does not exist."""
    stub: pb_grpc.StrataStub = client.stub
    calls = [
        (stub.GetCollection, pb.GetCollectionRequest()),
        (stub.DeleteCollection, pb.DeleteCollectionRequest()),
        (stub.GetItem, pb.GetItemRequest()),
        (stub.DeleteItems, pb.DeleteItemsRequest()),
        (stub.Search, pb.SearchRequest()),
        (stub.CreateCollection, pb.CreateCollectionRequest()),
    ]
    for method, request in calls:
        with pytest.raises(grpc.RpcError) as caught:
            method(request, timeout=60)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, caught.value)
    assert_serving(server, client)


@pytest.fixture(scope="module")
def pipelined_server(make_server: Callable[..., ServerHandle]) -> ServerHandle:
    """Two batches in flight per AddImages stream, as on a GPU."""
    return make_server(ingest_pipeline_depth=2)


@pytest.mark.parametrize("depth", [1, 2])
def test_a_client_that_waits_for_each_answer_before_sending_more_gets_it(
    server: ServerHandle, pipelined_server: ServerHandle, depth: int
) -> None:
    """Ingest may pipeline batches, but never holds an answer back waiting for more images."""
    target = pipelined_server if depth == 2 else server
    collection = fresh_name()
    with StrataClient(target.address) as client:
        client.create_collection(collection)
    answered: queue.Queue[pb.AddImageResult] = queue.Queue()
    names = ("chelsea", "coffee", "astronaut")

    def requests() -> Iterator[pb.AddImageRequest]:
        for name in names:
            yield pb.AddImageRequest(
                collection=collection, uri=f"{name}.jpg", image=photo_jpeg(name)
            )
            answered.get(timeout=60)  # this image's answer first; raises (fails) if none comes

    results = []
    with grpc.insecure_channel(target.address) as channel:
        for result in pb_grpc.StrataStub(channel).AddImages(requests(), timeout=180):
            results.append(result)
            answered.put(result)
    assert [(r.uri, r.status) for r in results] == [(f"{n}.jpg", "added") for n in names]


def test_a_pipelined_stream_answers_every_image_in_order(
    pipelined_server: ServerHandle, small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    images = [*small_jpegs(80, 3), ("broken.jpg", samples.truncated_jpeg())]
    with StrataClient(pipelined_server.address) as client:
        name = fresh_name()
        client.create_collection(name)
        results = list(client.add_images(name, [ImageToAdd(u, d) for u, d in images]))
        assert [r.uri for r in results] == [u for u, _ in images]
        assert [r.status for r in results] == ["added"] * 80 + ["failed"]
        assert client.get_collection(name).items == 80
