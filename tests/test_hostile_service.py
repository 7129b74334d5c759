"""Hostile and odd images through the running service (gRPC and the `strata` CLI), request
bounds, unknown ids, and a decompression bomb against a server process whose memory we watch.

The image samples come from tests/image_samples.py; the library-level checks of the same
samples are in test_images.py. Here the point is what a client sees: the status code, a
message naming the item, and that nothing was written."""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Callable
from pathlib import Path

import image_samples as samples
import numpy as np
import pytest
from conftest import ServeProcess, ServerHandle

from service import cli
from service.client import ImageToAdd, StrataClient, StrataClientError


def item_count(client: StrataClient, collection: str) -> int:
    return int(client.get_collection(collection).items)


def refused(call: Callable[[], object]) -> StrataClientError:
    with pytest.raises(StrataClientError) as caught:
        call()
    return caught.value


# -- hostile and odd images over gRPC -------------------------------------------------------


def test_every_hostile_image_is_refused_by_name_and_nothing_is_written(
    client: StrataClient, collection: str
) -> None:
    hostile = samples.hostile_samples()
    sent = [ImageToAdd(f"hostile/{name}.img", data) for name, data in hostile.items()]
    results = list(client.add_images(collection, sent))
    assert [r.uri for r in results] == [i.uri for i in sent]
    for name, result in zip(hostile, results, strict=True):
        assert result.status == "failed", (name, result)
        assert result.error.code == "INVALID_ARGUMENT", (name, result.error)
        assert f"hostile/{name}.img" in result.error.message, (name, result.error.message)
        assert samples.HOSTILE_REASON[name] in result.error.message.lower(), (name, result)
        assert result.error.hint, name
        assert result.id == 0
    assert item_count(client, collection) == 0


def test_hostile_query_images_are_refused_by_name(client: StrataClient, collection: str) -> None:
    from service.generated.strata.v1 import strata_pb2 as pb

    for name, data in samples.hostile_samples().items():
        query = pb.Query(name=f"query/{name}", image=data)
        error = refused(lambda q=query: client.search(collection, [q], k=1))  # type: ignore[misc]
        assert error.code == "INVALID_ARGUMENT", (name, error)
        assert f"query/{name}" in error.details, (name, error.details)


def test_odd_but_valid_images_are_all_stored(client: StrataClient, collection: str) -> None:
    valid = samples.valid_samples()
    results = list(client.add_images(collection, [ImageToAdd(n, d) for n, d in valid.items()]))
    assert {r.uri: r.status for r in results} == dict.fromkeys(valid, "added")
    assert item_count(client, collection) == len(valid)
    for result in results:
        item = client.get_item(collection, result.id)
        expected = samples.EXPECTED[result.uri]
        assert (item.width, item.height) == (expected.width, expected.height), result.uri


def test_exif_rotated_photo_embeds_like_its_upright_twin(
    client: StrataClient, collection: str
) -> None:
    embeddings = client.embed(
        [("upright", samples.upright_jpeg()), ("rotated", samples.exif_rotated_jpeg())],
        collection=collection,
    )
    upright, rotated = ({v.depth: np.array(v.values) for v in e.vectors} for e in embeddings)
    assert set(upright) == {"edges", "parts", "semantics"}
    for depth, vector in upright.items():
        cosine = float(
            vector @ rotated[depth] / np.linalg.norm(vector) / np.linalg.norm(rotated[depth])
        )
        assert cosine >= 0.99, (depth, cosine)


def test_a_batch_with_one_bad_image_stores_the_good_ones(
    client: StrataClient, collection: str
) -> None:
    batch = [
        ImageToAdd("good/cat.jpg", samples.upright_jpeg()),
        ImageToAdd("bad/truncated.jpg", samples.truncated_jpeg()),
        ImageToAdd("good/coffee.jpg", samples.progressive_jpeg()),
    ]
    results = list(client.add_images(collection, batch))
    assert [r.status for r in results] == ["added", "failed", "added"]
    assert "bad/truncated.jpg" in results[1].error.message
    assert results[1].error.code == "INVALID_ARGUMENT"
    assert item_count(client, collection) == 2
    hits = client.search(collection, [samples.progressive_jpeg()], k=1)[0]
    assert {d.hits[0].uri for d in hits.results} == {"good/coffee.jpg"}


def test_a_bad_uri_fails_alone_on_every_database(client: StrataClient, collection: str) -> None:
    """PostgreSQL refuses a NUL in text and a uri over its index's entry size: checked per
    image, the same on SQLite, so neither fails the batch nor a later move of the data."""
    random_text = "".join(random.Random(7).choices(string.ascii_letters, k=3000))
    bad_uris = ["bad\x00uri.jpg", f"{random_text}.jpg", "é" * 1100]  # the last: 2,200 bytes
    batch = [
        ImageToAdd("good/first.jpg", samples.upright_jpeg()),
        *(ImageToAdd(uri, samples.progressive_jpeg()) for uri in bad_uris),
        ImageToAdd("good/last.jpg", samples.progressive_jpeg()),
    ]
    results = list(client.add_images(collection, batch))
    assert [r.status for r in results] == ["added", "failed", "failed", "failed", "added"]
    for result in results[1:4]:
        assert result.error.code == "INVALID_ARGUMENT" and "uri " in result.error.message
        assert result.error.hint
    assert "NUL" in results[1].error.message
    assert "over the limit of 2,048" in results[2].error.message
    assert item_count(client, collection) == 2


# -- the same through the CLI ----------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = cli.main([*args, "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


def test_cli_index_refuses_hostile_files_and_accepts_odd_ones(
    server: ServerHandle,
    client: StrataClient,
    collection: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hostile_dir, odd_dir = tmp_path / "hostile", tmp_path / "odd"
    hostile_dir.mkdir()
    odd_dir.mkdir()
    hostile = {}
    for name, data in samples.hostile_samples().items():
        hostile[name] = hostile_dir / f"{name}.jpg"
        hostile[name].write_bytes(data)
    for name, data in samples.valid_samples().items():
        (odd_dir / f"{name}.png").write_bytes(data)

    base = ("--server", server.address, "--collection", collection)
    code, document = run_cli(capsys, "index", *map(str, hostile.values()), *base, "--quiet")
    assert code == 1
    assert document["added"] == 0
    failed = {entry["uri"]: entry["error"] for entry in document["failed"]}
    assert set(failed) == {str(p) for p in hostile.values()}
    for name, path in hostile.items():
        assert "INVALID_ARGUMENT" in failed[str(path)] and str(path) in failed[str(path)], name
    assert item_count(client, collection) == 0

    code, document = run_cli(capsys, "index", str(odd_dir), *base, "--quiet")
    assert code == 0, document
    assert document["added"] == len(samples.ODD_BUT_VALID) and not document["failed"]
    assert item_count(client, collection) == len(samples.ODD_BUT_VALID)

    code, document = run_cli(
        capsys,
        "search",
        str(hostile["png_bomb"]),
        "--server",
        server.address,
        "--collection",
        collection,
    )
    assert code == 1
    assert document["error"]["code"] == "INVALID_ARGUMENT"
    assert "decompression bomb" in document["error"]["message"]


# -- bounds and unknown ids --------------------------------------------------------------------


def test_request_bounds_are_enforced(
    make_server: Callable[..., ServerHandle], small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    # batch_size <= max_images_per_request: the AddImages batcher groups batch_size messages
    # and ingest refuses a group over the limit (servicer fix reported; see issue 4 notes).
    handle = make_server(max_k=5, max_images_per_request=4, max_message_bytes=1 << 20, batch_size=4)
    photo = small_jpegs(1, 3)[0][1]
    with handle.client(timeout=120) as client:
        client.create_collection("bounds")
        error = refused(lambda: client.search("bounds", [photo], k=6))
        assert error.code == "INVALID_ARGUMENT" and "k=6" in error.details
        error = refused(lambda: client.search("bounds", [photo], k=-1))
        assert error.code == "INVALID_ARGUMENT"
        error = refused(lambda: client.search("bounds", [photo] * 5, k=1))
        assert error.code == "INVALID_ARGUMENT" and "limit of 4" in error.details
        error = refused(lambda: client.embed([("x", photo)] * 5))
        assert error.code == "INVALID_ARGUMENT" and "limit of 4" in error.details
        error = refused(lambda: client.classify([("x", photo)] * 5))
        assert error.code == "INVALID_ARGUMENT" and "limit of 4" in error.details
        # A message over max_message_bytes is refused by the transport, before any work.
        big = photo + bytes(2 << 20)
        error = refused(lambda: list(client.add_images("bounds", [ImageToAdd("big.jpg", big)])))
        assert error.code == "RESOURCE_EXHAUSTED", error
        assert "larger than max" in error.details, error.details
        error = refused(lambda: client.search("bounds", [big], k=1))
        assert error.code == "RESOURCE_EXHAUSTED", error
        # A stream is not a batch: more images than max_images_per_request still go in.
        images = [ImageToAdd(u, d) for u, d in small_jpegs(6, 4)]
        assert [r.status for r in client.add_images("bounds", images)] == ["added"] * 6
        assert client.get_collection("bounds").items == 6


def test_unknown_ids_and_collections_are_not_found(client: StrataClient, collection: str) -> None:
    missing = 987_654_321
    for call in (
        lambda: client.get_item(collection, missing),
        lambda: client.delete_items(collection, [missing]),
        lambda: client.search(collection, [missing], k=1),
        lambda: client.get_collection("no-such-collection"),
        lambda: client.search("no-such-collection", [[1.0, 0.0]], k=1),
        lambda: list(client.add_images("no-such-collection", [ImageToAdd("x", b"x")])),
    ):
        error = refused(call)
        assert error.code == "NOT_FOUND", error
        assert error.details


# -- a bomb against a server process -----------------------------------------------------------


def test_bombs_are_refused_fast_without_memory_growth(
    serve_process: Callable[..., ServeProcess],
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
) -> None:
    server = serve_process()
    with server.client(timeout=300) as client:
        client.create_collection("bombs")
        # Warm up: the model is loaded and one image went all the way through.
        warm = [ImageToAdd(u, d) for u, d in small_jpegs(2, 6)]
        assert [r.status for r in client.add_images("bombs", warm)] == ["added", "added"]
        bombs = {name: samples.HOSTILE[name]() for name in samples.BOMBS}
        before = server.memory_kb()
        timings = {}
        for name, data in bombs.items():
            began = time.perf_counter()
            results = list(client.add_images("bombs", [ImageToAdd(f"{name}.png", data)]))
            timings[name] = time.perf_counter() - began
            assert results[0].status == "failed" and results[0].error.code == "INVALID_ARGUMENT"
            assert "decompression bomb" in results[0].error.message, results[0].error.message
        after = server.memory_kb()
        assert client.get_collection("bombs").items == 2
    growth_mb = {key: (after[key] - before[key]) / 1024 for key in before}
    print(f"bomb refusal seconds {timings}; memory growth MB {growth_mb}")
    assert max(timings.values()) < 1.0, timings
    assert growth_mb["VmHWM"] < 100 and growth_mb["VmRSS"] < 100, growth_mb
