"""`strata serve --metrics-listen HOST:PORT --log-format json`: the Prometheus endpoint counts
the requests made (per RPC and status), the images embedded, forward-pass batch sizes,
decode failures, the time of each stage (decode, forward pass, FAISS, SQL) and index sizes;
every log line is one JSON object. A real process, real database, real Lite0 and real
photos; the counts are compared with what the test did."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable

from conftest import ServeProcess, free_port
from photos import colour_photos, jpeg
from prometheus_client.parser import text_string_to_metric_families

from service.client import ImageToAdd, StrataClientError


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """sample name + sorted labels -> value."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_the_requests_made_and_logs_are_json(
    serve_process: Callable[..., ServeProcess],
) -> None:
    address = f"127.0.0.1:{free_port()}"
    server = serve_process(STRATA_METRICS_LISTEN=address, STRATA_LOG_FORMAT="json")
    before = scrape(address)
    name = f"m-{uuid.uuid4().hex[:8]}"
    photos = [(f"{n}.jpg", jpeg(colour_photos()[n], 90)) for n in ("chelsea", "coffee", "rocket")]
    searches = 4
    with server.client(timeout=300) as client:
        client.create_collection(name)
        results = list(
            client.add_images(
                name,
                [ImageToAdd(uri, data) for uri, data in photos]
                + [ImageToAdd("broken.jpg", b"\xff\xd8 not really a jpeg")],
            )
        )
        assert [r.status for r in results] == ["added", "added", "added", "failed"]
        for _ in range(searches):
            client.search(name, [photos[0][1]], k=2)
        for _ in range(2):
            try:
                client.get_collection(f"absent-{uuid.uuid4().hex[:6]}")
            except StrataClientError as exc:
                assert exc.code == "NOT_FOUND"
            else:
                raise AssertionError("an absent collection was found")
    after = scrape(address)

    def made(method: str, code: str = "OK") -> float:
        key = "strata_rpc_requests_total"
        full = f"/strata.v1.Strata/{method}"
        return value(after, key, method=full, code=code) - value(
            before, key, method=full, code=code
        )

    assert made("CreateCollection") == 1
    assert made("AddImages") == 1
    assert made("Search") == searches
    assert made("GetCollection", "NOT_FOUND") == 2
    latency = "strata_rpc_latency_seconds_count"
    search = "/strata.v1.Strata/Search"
    assert (
        value(after, latency, method=search, code="OK")
        - value(before, latency, method=search, code="OK")
        == searches
    )
    # 3 photos ingested + 4 image queries went through the network.
    embedded = value(after, "strata_images_embedded_total", backbone="efficientnet_lite0")
    assert (
        embedded - value(before, "strata_images_embedded_total", backbone="efficientnet_lite0")
        == 3 + searches
    )
    assert value(after, "strata_forward_batch_images_count") >= 1 + searches
    assert sum(v for (n, _), v in after.items() if n == "strata_decode_failures_total") >= 1

    def stage(name: str, suffix: str) -> float:
        key = f"strata_stage_seconds_{suffix}"
        return value(after, key, stage=name) - value(before, key, stage=name)

    # Each search decodes its photo, runs a pass, searches FAISS and reads its hits. The
    # stream's 4 photos arrive as one batch or a few (the server batches what has arrived):
    # each decodes once, and each with a good photo runs one pass, one SQL write, one add.
    assert stage("index_search", "count") == searches
    assert stage("hit_details", "count") == searches
    ingest_decodes = stage("decode", "count") - searches
    ingest_passes = stage("forward", "count") - searches
    assert 1 <= ingest_passes <= ingest_decodes <= len(photos) + 1
    assert stage("write", "count") == stage("index_add", "count") == ingest_passes
    for each in ("decode", "forward", "index_search", "hit_details", "write", "index_add"):
        assert stage(each, "sum") > 0, each
    # A forward pass of Lite0 is far slower than reading 2 hits: the times are the stages'.
    assert stage("forward", "sum") / stage("forward", "count") > (
        stage("hit_details", "sum") / searches
    )
    for depth in ("edges", "parts", "semantics"):
        sizes = [
            v
            for (n, labels), v in after.items()
            if n == "strata_index_vectors"
            and ("collection", name) in labels
            and ("depth", depth) in labels
        ]
        assert sizes == [3.0], (depth, sizes)
    assert value(after, "strata_replication_lag_seconds") < 10
    # The model and engines built at start-up are out of the collector's reach (server.py).
    assert value(after, "strata_gc_frozen_objects") > 100_000

    lines = [line for line in server.log(200_000).splitlines() if line.startswith("{")]
    assert lines, server.log()
    records = [json.loads(line) for line in lines]  # every such line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert any("metrics on http://" in r["message"] for r in records)
    # The ready line on stdout is a record too: collectors read stdout and stderr as one.
    assert "serving on" not in "".join(set(server.log(200_000).splitlines()) - set(lines))
    ready = [r for r in records if "serving on" in r["message"]]
    assert [r["listen"] for r in ready] == [server.address], ready
