"""Start-up warm-up: the engines a server's collections need are built and run before
health says SERVING, so the first request finds them; without collections, the default
depths' engine (what `collections create NAME` asks for) is warm."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
import torchvision
from grpc_health.v1 import health_pb2, health_pb2_grpc
from photos import photo_jpeg
from PIL import Image
from prometheus_client import REGISTRY

from indexer.backbones.weights import WEIGHTS_DIR_ENV
from indexer.catalog.warmup import warm_up_photo
from indexer.core.settings import Settings, SettingsError
from indexer.core.vocabulary import DEFAULT_BACKBONE
from service.client import ImageToAdd
from service.settings import ServiceSettings


def _engines(server: Any) -> list[Any]:
    return list(server.running.ctx.backbones.get(DEFAULT_BACKBONE).engines.cached())


def _serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def test_a_new_server_is_serving_with_the_default_engine_built(make_server: Any) -> None:
    server = make_server(warm_up=True)
    assert _serving(server.address)
    warmed = _engines(server)
    assert len(warmed) == 1
    with server.client(timeout=300) as client:
        client.create_collection("first")  # the defaults
        [result] = list(client.add_images("first", [ImageToAdd("a.jpg", photo_jpeg("coffee"))]))
        assert result.status == "added"
        client.search("first", [result.id], k=1)
    assert _engines(server) == warmed  # ingest and search used the warm engine


def test_a_restarted_server_warms_each_collections_own_depths(
    make_server: Any, tmp_path: Path
) -> None:
    first = make_server(data_dir=tmp_path / "data", warm_up=False)
    with first.client(timeout=300) as client:
        client.create_collection("early", depths=["edges", "blocks.2"])
    database_url = first.settings.database_url
    first.stop()

    again = make_server(data_dir=tmp_path / "data", database_url=database_url, warm_up=True)
    keys = _engines(again)
    assert [layers for layers, _pooling, _logits in keys] == [("blocks.1", "blocks.2")]
    # Its searches were warmed too: the spec a search needs is already cached.
    cached = again.running.ctx.specs.get("early")
    assert cached is not None and [d.layer for d in cached.depths] == ["blocks.1", "blocks.2"]


def _images_embedded() -> float:
    value = REGISTRY.get_sample_value(
        "strata_images_embedded_total", {"backbone": DEFAULT_BACKBONE}
    )
    return value or 0.0


def test_warm_up_searches_with_an_image_once_per_engine_and_framing_and_writes_nothing(
    make_server: Any, tmp_path: Path
) -> None:
    first = make_server(data_dir=tmp_path / "data", warm_up=False)
    with first.client(timeout=300) as client:
        client.create_collection("a")  # the defaults
        client.create_collection("b")  # the same engine and framing: a vector query will do
        client.create_collection("c", framing="whole")  # decoded and framed another way
        [added] = list(client.add_images("a", [ImageToAdd("x.jpg", photo_jpeg("coffee"))]))
        assert added.status == "added"
    database_url = first.settings.database_url
    first.stop()

    before = _images_embedded()
    again = make_server(data_dir=tmp_path / "data", database_url=database_url, warm_up=True)
    # One image for a and c each (the first collection of each engine and framing), none for b.
    assert _images_embedded() - before == 2
    assert all(again.running.ctx.specs.get(name) is not None for name in "abc")
    with again.client(timeout=300) as client:
        assert {c.name: c.items for c in client.list_collections()} == {"a": 1, "b": 0, "c": 0}


def test_a_server_that_refuses_photos_that_large_warms_without_one(
    make_server: Any, tmp_path: Path
) -> None:
    first = make_server(data_dir=tmp_path / "data", warm_up=False)
    with first.client(timeout=300) as client:
        client.create_collection("small")
    database_url = first.settings.database_url
    first.stop()

    before = _images_embedded()
    small = 200 * 200  # below the warm-up photo's 500 x 375
    again = make_server(
        data_dir=tmp_path / "data", database_url=database_url, warm_up=True, max_pixels=small
    )
    assert _serving(again.address)
    assert len(_engines(again)) == 1  # the engine is warm all the same
    assert _images_embedded() == before  # no photo went through: a vector query instead
    assert again.running.ctx.specs.get("small") is not None


def test_a_collection_whose_weights_went_missing_is_still_warmed_by_vector(
    make_server: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    own = tmp_path / "weights"
    own.mkdir()
    weights = own / "mobilenet_v3_large-5c1a4163.pth"  # torchvision's file name
    torch.save(torchvision.models.mobilenet_v3_large(weights=None).state_dict(), weights)
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(own))
    first = make_server(data_dir=tmp_path / "data", warm_up=False)
    with first.client(timeout=300) as client:
        client.create_collection("mobile", backbone="mobilenet_v3_large")
    database_url = first.settings.database_url
    first.stop()
    weights.unlink()

    caplog.set_level(logging.INFO, logger="indexer.catalog.warmup")
    again = make_server(data_dir=tmp_path / "data", database_url=database_url, warm_up=True)
    assert _serving(again.address)
    assert again.running.ctx.specs.get("mobile") is not None
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name.endswith("warmup")]
    # The engine's warning says the weights are missing, once; the image query's failure
    # is a note, and the vector query behind it warms the collection's searches.
    warnings = [m for level, m in said if level >= logging.WARNING]
    assert not any(m.startswith("warming searches of mobile") for m in warnings), warnings
    assert any("warming mobile with an image failed" in m for _, m in said)
    assert any(
        level == logging.WARNING and "not warming mobilenet_v3_large" in m for level, m in said
    )


def test_the_warm_up_photo_is_a_photo_sized_jpeg() -> None:
    with Image.open(io.BytesIO(warm_up_photo())) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (500, 375), "RGB")


def test_warm_up_reads_from_the_environment_and_refuses_nonsense() -> None:
    assert ServiceSettings.load(env={"STRATA_WARM_UP": "0"}).warm_up is False
    assert ServiceSettings.load(env={"STRATA_WARM_UP": "yes"}).warm_up is True
    try:
        ServiceSettings.load(env={"STRATA_WARM_UP": "maybe"})
    except SettingsError as exc:
        assert "STRATA_WARM_UP='maybe'" in str(exc)
    else:
        raise AssertionError("STRATA_WARM_UP=maybe was accepted")
    assert Settings.load(env={}).data_dir  # the base settings have no such field: unaffected
