"""strata.v1.Browse over real gRPC, a real database (SQLite or PostgreSQL), real FAISS and
Lite0: thumbnails made at ingest and backfilled, paged/filtered/sorted item listings,
cached 2-D projections that follow the collection's changes, and token permissions."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from photos import colour_photos, jpeg
from PIL import Image
from sqlalchemy import delete, select

from indexer.store.models import Item, Thumbnail
from service.client import ImageToAdd, StrataClient, StrataClientError

# ImageNet preprocessing's shorter side (256) is below these photos' sides, so their
# thumbnails are made from a reduced decode at most; the small crops stay unenlarged.
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images(small_jpegs: Callable[..., list[tuple[str, bytes]]]) -> list[tuple[str, bytes]]:
    """4 photos (one PNG) larger than a thumbnail, 16 small JPEG crops (96-160 px)."""
    photos = colour_photos()
    big = [(f"photos/{name}.jpg", jpeg(photos[name])) for name in PHOTOS[1:]]
    big.append(("photos/astronaut.png", png(photos["astronaut"])))
    return big + small_jpegs(16, 7)


@pytest.fixture(scope="module")
def browsed(
    server: object, images: list[tuple[str, bytes]]
) -> Iterator[tuple[str, dict[str, int]]]:
    """A collection holding `images`: the first 10 labelled (cat or dog), the even ones
    with metadata half=even. Yields (name, uri -> id)."""
    name = f"browse-{uuid.uuid4().hex[:8]}"
    with server.client(timeout=300) as client:  # type: ignore[attr-defined]
        client.create_collection(name)
        to_add = [
            ImageToAdd(
                uri,
                data,
                labels=(["cat"] if i % 2 else ["dog"]) if i < 10 else [],
                metadata={"half": "even" if i % 2 == 0 else "odd"},
            )
            for i, (uri, data) in enumerate(images)
        ]
        ids = {r.uri: r.id for r in client.add_images(name, to_add)}
        assert all(ids.values()), ids
        yield name, ids
        client.delete_collection(name)


def all_pages(client: StrataClient, collection: str, page_size: int, **kwargs: Any) -> list[Any]:
    items: list[Any] = []
    token, totals = "", set()
    while True:
        page = client.list_items(collection, page_size=page_size, page_token=token, **kwargs)
        assert len(page.items) <= page_size
        items.extend(page.items)
        totals.add(page.total)
        token = page.next_page_token
        if not token:
            break
    assert len(totals) == 1 and totals.pop() == len(items)
    return items


def code(exc: pytest.ExceptionInfo[StrataClientError]) -> str:
    return exc.value.code


# -- thumbnails -----------------------------------------------------------------------------


def test_ingest_makes_bounded_thumbnails(
    client: StrataClient, browsed: tuple[str, dict[str, int]], images: list[tuple[str, bytes]]
) -> None:
    name, ids = browsed
    wanted = [ids[uri] for uri, _ in images]
    answer = client.get_thumbnails(name, [*reversed(wanted), wanted[0]])  # order, duplicates
    assert list(answer.missing) == []
    assert [t.id for t in answer.thumbnails] == list(reversed(wanted))
    by_id = {t.id: t for t in answer.thumbnails}
    for uri, data in images:
        thumb = by_id[ids[uri]]
        original = Image.open(io.BytesIO(data))
        shown = Image.open(io.BytesIO(thumb.data))
        assert thumb.media_type == "image/jpeg" and shown.format == "JPEG"
        assert shown.size == (thumb.width, thumb.height)
        assert max(shown.size) == min(256, max(original.size)), uri
        # Aspect kept to the pixel.
        assert abs(shown.width / shown.height - original.width / original.height) < 0.02
        # Shows the same picture: mean colour close to the original's.
        mean = np.asarray(shown.convert("RGB"), np.float32).mean(axis=(0, 1))
        expected = np.asarray(original.convert("RGB"), np.float32).mean(axis=(0, 1))
        assert np.abs(mean - expected).max() < 8, uri


def test_device_decoded_jpegs_get_thumbnails_too(
    make_server: Callable[..., object], images: list[tuple[str, bytes]]
) -> None:
    """With JPEG decoding on the model's device (here the CPU build of the same code), the
    pixels there are already framed; the thumbnail comes from a reduced-scale CPU decode."""
    served = make_server(device_decode="on")
    with served.client(timeout=300) as client:  # type: ignore[attr-defined]
        client.create_collection("device")
        chosen = [images[0], images[3], images[5]]  # chelsea.jpg, astronaut.png, a crop
        ids = [r.id for r in client.add_images("device", [ImageToAdd(u, d) for u, d in chosen])]
        answer = client.get_thumbnails("device", ids)
        assert list(answer.missing) == []
        for (uri, data), thumb in zip(chosen, answer.thumbnails, strict=True):
            original = Image.open(io.BytesIO(data))
            assert max(thumb.width, thumb.height) == min(256, max(original.size)), uri
            assert Image.open(io.BytesIO(thumb.data)).size == (thumb.width, thumb.height)


def test_thumbnails_of_unknown_ids_are_refused(
    client: StrataClient, browsed: tuple[str, dict[str, int]]
) -> None:
    name, ids = browsed
    with pytest.raises(StrataClientError) as refused:
        client.get_thumbnails(name, [min(ids.values()), 987_654_321])
    assert code(refused) == "NOT_FOUND" and "987654321" in refused.value.details
    with pytest.raises(StrataClientError) as too_many:
        client.get_thumbnails(name, list(range(1, 1002)))
    assert code(too_many) == "INVALID_ARGUMENT"


def test_backfill_stores_thumbnails_and_refuses_other_content(
    server: object, client: StrataClient, images: list[tuple[str, bytes]]
) -> None:
    """Items from before thumbnails existed (their rows removed here, as after migration
    0003) get theirs from the original bytes; bytes of another image are refused."""
    name = f"backfill-{uuid.uuid4().hex[:8]}"
    client.create_collection(name)
    try:
        chosen = images[:3]
        ids = [r.id for r in client.add_images(name, [ImageToAdd(u, d) for u, d in chosen])]
        ctx = server.running.ctx  # type: ignore[attr-defined]
        with ctx.sessions.begin() as session:
            session.execute(delete(Thumbnail).where(Thumbnail.item_id.in_(ids)))
        before = client.get_thumbnails(name, ids)
        assert list(before.missing) == ids and len(before.thumbnails) == 0
        answer = client.backfill_thumbnails(
            name,
            [
                (ids[0], chosen[0][1]),
                (ids[1], chosen[2][1]),  # another item's image
                (ids[2], chosen[2][1]),
                (987_654_321, chosen[0][1]),  # no such item
            ],
        )
        assert answer.written == 2
        failed = {f.id: f.error for f in answer.failed}
        assert set(failed) == {ids[1], 987_654_321}
        assert failed[ids[1]].code == "INVALID_ARGUMENT"
        assert "content hash" in failed[ids[1]].message and chosen[1][0] in failed[ids[1]].message
        assert failed[987_654_321].code == "NOT_FOUND"
        after = client.get_thumbnails(name, ids)
        assert list(after.missing) == [ids[1]]
        assert {t.id for t in after.thumbnails} == {ids[0], ids[2]}
        assert max(Image.open(io.BytesIO(after.thumbnails[0].data)).size) <= 256
    finally:
        client.delete_collection(name)


# -- listing --------------------------------------------------------------------------------


@pytest.mark.parametrize("order_by", ["id", "-id", "uri", "-uri", "confidence", "-confidence"])
def test_paging_visits_every_item_once_in_order(
    client: StrataClient, browsed: tuple[str, dict[str, int]], order_by: str
) -> None:
    name, ids = browsed
    items = all_pages(client, name, 3, order_by=order_by)
    assert sorted(i.id for i in items) == sorted(ids.values())  # each exactly once

    def confidence(item: object) -> float:
        return max((lb.confidence for lb in item.labels), default=0.0)  # type: ignore[attr-defined]

    field = order_by.lstrip("-")
    keys = {
        "id": lambda i: (i.id,),
        "uri": lambda i: (i.uri, i.id),
        "confidence": lambda i: (confidence(i), i.id),
    }[field]
    assert items == sorted(items, key=keys, reverse=order_by.startswith("-"))


def test_listing_filters_by_labels_metadata_and_source(
    client: StrataClient, browsed: tuple[str, dict[str, int]], images: list[tuple[str, bytes]]
) -> None:
    name, ids = browsed
    uris = [u for u, _ in images]
    cats = {ids[u] for i, u in enumerate(uris) if i < 10 and i % 2}
    even = {ids[u] for i, u in enumerate(uris) if i % 2 == 0}
    unlabelled = {ids[u] for i, u in enumerate(uris) if i >= 10}

    def listed(**kwargs: Any) -> set[int]:
        return {i.id for i in all_pages(client, name, 4, **kwargs)}

    assert listed(labels_any=["cat"]) == cats
    assert listed(labels_any=["cat", "dog"]) == set(ids.values()) - unlabelled
    assert listed(metadata={"half": "even"}) == even
    assert listed(labels_any=["cat"], metadata={"half": "even"}) == set()  # cats are odd
    assert listed(label_source="none") == unlabelled
    assert listed(label_source="human") == set(ids.values()) - unlabelled
    assert listed(label_source="predicted") == set()
    page = client.list_items(name, page_size=2, labels_any=["dog"])
    assert page.total == 5 and len(page.items) == 2
    assert all("dog" in [lb.label for lb in i.labels] for i in page.items)


def test_listing_refuses_bad_requests(
    client: StrataClient, browsed: tuple[str, dict[str, int]]
) -> None:
    name, _ = browsed
    token = client.list_items(name, page_size=2).next_page_token
    assert token
    for kwargs, word in [
        ({"order_by": "size"}, "order"),
        ({"label_source": "robot"}, "label source"),
        ({"page_size": 5000}, "page size"),
        ({"page_token": "not-a-token"}, "page token"),
        ({"page_token": token, "order_by": "-uri"}, "another order"),
        ({"page_token": token, "labels_any": ["cat"]}, "another order"),
    ]:
        with pytest.raises(StrataClientError) as refused:
            client.list_items(name, **kwargs)  # type: ignore[arg-type]
        assert code(refused) == "INVALID_ARGUMENT", kwargs
        assert word in refused.value.details, (kwargs, refused.value.details)
    with pytest.raises(StrataClientError) as missing:
        client.list_items("no-such-collection")
    assert code(missing) == "NOT_FOUND"


# -- projection -----------------------------------------------------------------------------


def decode_projection(projection: object) -> tuple[np.ndarray, np.ndarray]:
    ids = np.frombuffer(projection.ids, "<i8")  # type: ignore[attr-defined]
    xy = np.frombuffer(projection.xy, "<f4").reshape(-1, 2)  # type: ignore[attr-defined]
    return ids, xy


def test_projection_is_cached_and_recomputed_after_changes(
    client: StrataClient, images: list[tuple[str, bytes]]
) -> None:
    name = f"map-{uuid.uuid4().hex[:8]}"
    client.create_collection(name)
    try:
        added = {
            r.uri: r.id for r in client.add_images(name, [ImageToAdd(u, d) for u, d in images[:12]])
        }
        first = client.get_projection(name)
        assert (first.depth, first.method, first.cached) == ("semantics", "pca", False)
        ids, xy = decode_projection(first)
        assert first.count == 12 and ids.tolist() == sorted(added.values())
        assert xy.shape == (12, 2) and np.abs(xy).max() <= 1.0 and np.isclose(np.abs(xy).max(), 1.0)
        assert len({tuple(p) for p in xy.round(4)}) == 12  # distinct photos, distinct points

        again = client.get_projection(name)
        assert again.cached and again.seconds == 0.0
        assert (again.ids, again.xy, again.collection_version) == (
            first.ids,
            first.xy,
            first.collection_version,
        )
        edges = client.get_projection(name, depth="edges")
        assert not edges.cached and edges.depth == "edges" and edges.xy != first.xy

        # An add and a delete each make the cached map stale.
        uri, data = images[12]
        new_id = next(iter(client.add_images(name, [ImageToAdd(uri, data)]))).id
        grown = client.get_projection(name)
        assert not grown.cached and grown.count == 13
        assert grown.collection_version > first.collection_version
        assert new_id in decode_projection(grown)[0]
        client.delete_items(name, [new_id, added[images[0][0]]])
        shrunk = client.get_projection(name)
        assert not shrunk.cached and shrunk.count == 11
        assert shrunk.collection_version > grown.collection_version
        assert client.get_projection(name).cached
        # Labels do not move points: the cache stays valid.
        client.set_labels(name, {added[images[1][0]]: ["cat"]})
        assert client.get_projection(name).cached

        for kwargs, status in [
            ({"method": "mds"}, "INVALID_ARGUMENT"),
            ({"depth": "nowhere"}, "NOT_FOUND"),
        ]:
            with pytest.raises(StrataClientError) as refused:
                client.get_projection(name, **kwargs)
            assert code(refused) == status
    finally:
        client.delete_collection(name)


def test_projection_of_an_empty_collection(client: StrataClient) -> None:
    name = f"empty-{uuid.uuid4().hex[:8]}"
    client.create_collection(name)
    try:
        empty = client.get_projection(name)
        assert empty.count == 0 and empty.ids == b"" and empty.xy == b""
    finally:
        client.delete_collection(name)


# -- permissions ----------------------------------------------------------------------------


def test_read_tokens_browse_but_cannot_backfill(
    make_server: Callable[..., object], images: list[tuple[str, bytes]]
) -> None:
    served = make_server(read_tokens=("reader",), write_tokens=("writer",))
    name = "tokens"
    with served.client(token="writer", timeout=300) as writer:  # type: ignore[attr-defined]
        writer.create_collection(name)
        item_id = next(iter(writer.add_images(name, [ImageToAdd(*images[0])]))).id
        assert writer.backfill_thumbnails(name, [(item_id, images[0][1])]).written == 1
    with served.client(token="reader", timeout=300) as reader:  # type: ignore[attr-defined]
        assert [i.id for i in reader.list_items(name).items] == [item_id]
        assert reader.get_thumbnails(name, [item_id]).thumbnails[0].id == item_id
        assert reader.get_projection(name).count == 1
        with pytest.raises(StrataClientError) as refused:
            reader.backfill_thumbnails(name, [(item_id, images[0][1])])
        assert code(refused) == "PERMISSION_DENIED"
    with served.client(timeout=30) as anonymous:  # type: ignore[attr-defined]
        with pytest.raises(StrataClientError) as unknown:
            anonymous.list_items(name)
        assert code(unknown) == "UNAUTHENTICATED"


def test_every_ingested_item_has_a_thumbnail_row(
    server: object, client: StrataClient, browsed: tuple[str, dict[str, int]]
) -> None:
    """Every item of the collection has a row in thumbnails after ingest (SQL check)."""
    _, ids = browsed
    ctx = server.running.ctx  # type: ignore[attr-defined]
    with ctx.sessions() as session:
        stored = set(
            session.scalars(
                select(Thumbnail.item_id)
                .join(Item, Item.id == Thumbnail.item_id)
                .where(Item.id.in_(list(ids.values())))
            )
        )
    assert stored == set(ids.values())


# -- CLI ------------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], server: object, *args: str) -> tuple[int, Any]:
    """`strata ARGS --server ... --json` in this process; returns (rc, its JSON document)."""
    from service.cli.main import main

    capsys.readouterr()
    rc = main([*args, "--server", server.address, "--json"])  # type: ignore[attr-defined]
    return rc, json.loads(capsys.readouterr().out)


def test_cli_items_list_pages_and_filters(
    capsys: pytest.CaptureFixture[str], server: object, browsed: tuple[str, dict[str, int]]
) -> None:
    name, ids = browsed
    rc, first = run_cli(capsys, server, "items", "list", "--collection", name, "--page-size", "7")
    assert rc == 0 and first["total"] == len(ids) and len(first["items"]) == 7
    seen = [i["id"] for i in first["items"]]
    token = first["next_page_token"]
    while token:
        rc, page = run_cli(
            capsys, server, "items", "list", "--collection", name, "--page-size", "7",
            "--page-token", token,
        )  # fmt: skip
        seen += [i["id"] for i in page["items"]]
        token = page["next_page_token"]
    assert seen == sorted(ids.values())
    rc, cats = run_cli(
        capsys, server, "items", "list", "--collection", name, "--label", "cat",
        "--meta", "half=odd", "--source", "human", "--order-by=-uri",
    )  # fmt: skip
    assert rc == 0 and cats["total"] == 5 and cats["next_page_token"] == ""
    uris = [i["uri"] for i in cats["items"]]
    assert uris == sorted(uris, reverse=True)
    assert all(i["labels"][0]["label"] == "cat" for i in cats["items"])


def test_cli_backfill_matches_files_by_uri_and_map_draws_a_png(
    capsys: pytest.CaptureFixture[str],
    server: object,
    client: StrataClient,
    images: list[tuple[str, bytes]],
    tmp_path: Path,
) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, (_, data) in enumerate(images[:6]):
        (folder / f"{i}.jpg").write_bytes(data)
    client.create_collection(name)
    try:
        rc, indexed = run_cli(capsys, server, "index", str(folder), "--collection", name)
        assert rc == 0 and indexed["added"] == 6
        ctx = server.running.ctx  # type: ignore[attr-defined]
        with ctx.sessions.begin() as session:  # as if indexed before thumbnails existed
            ids = list(session.scalars(select(Item.id).where(Item.uri.like(f"{folder}%"))))
            session.execute(delete(Thumbnail).where(Thumbnail.item_id.in_(ids)))
        assert len(ids) == 6
        (folder / "5.jpg").write_bytes(images[7][1])  # changed since it was indexed
        rc, done = run_cli(
            capsys, server, "thumbnails", "backfill", str(folder), "--collection", name, "--quiet"
        )
        assert rc == 1 and done["written"] == 5 and done["matched"] == 6
        assert [f["uri"] for f in done["failed"]] == [str(folder / "5.jpg")]
        assert "content hash" in done["failed"][0]["error"]
        assert len(client.list_items(name, without_thumbnail=True).items) == 1

        client.set_labels(name, {ids[0]: ["cat"], ids[1]: ["cat"], ids[2]: ["dog"]})
        out = tmp_path / "map.png"
        rc, drawn = run_cli(capsys, server, "map", "--collection", name, "--out", str(out))
        assert rc == 0 and drawn["count"] == 6 and drawn["depth"] == "semantics"
        assert drawn["classes"] == ["cat", "dog"]
        with Image.open(out) as picture:
            assert picture.format == "PNG" and picture.width > 400
    finally:
        client.delete_collection(name)


def test_browse_is_in_health_and_reflection(server: object) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(server.address) as channel:  # type: ignore[attr-defined]
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service="strata.v1.Browse"), timeout=30)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (listed,) = list(reflection.ServerReflectionInfo(iter([request]), timeout=30))
    assert "strata.v1.Browse" in {s.name for s in listed.list_services_response.service}
