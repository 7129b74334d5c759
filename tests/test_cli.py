"""The `strata` CLI as a user runs it: a subprocess talking to a real server, --json output
parsed as exactly one document, exit codes, and `strata serve` started and stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import image_samples as samples
import pytest
from conftest import ServerHandle
from helpers import free_port
from photos import photo, photo_jpeg, png

from service.client import StrataClient

REPO_ROOT = Path(__file__).resolve().parents[1]
CAT_CLASSES = {"tiger cat", "tabby", "Egyptian cat"}
PRESETS = ["edges", "parts", "semantics"]


def strata_process(*args: str, text: bool = False) -> subprocess.Popen[Any]:
    """`strata ARGS...` running from the repository, its stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=text,
    )


def strata(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=cwd or REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli(server: ServerHandle) -> Callable[..., Any]:
    """Run a client command against the shared server with --json; returns (rc, document).

    stdout must hold exactly one JSON document, whatever the outcome."""

    def run(*args: str, cwd: Path | None = None) -> tuple[int, Any]:
        done = strata(*args, "--server", server.address, "--json", cwd=cwd)
        try:
            document = json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"stdout is not one JSON document: {done.stdout!r}\n{done.stderr}")
        return done.returncode, document

    return run


def test_json_into_a_pipe_closed_early_stops_quietly(server: ServerHandle, tmp_path: Path) -> None:
    """`strata embed ... --json | head -c 100`: no traceback when head stops reading."""
    images: list[str] = []
    for name in ("chelsea", "coffee", "astronaut", "rocket") * 2:  # > a pipe's 64 KiB of JSON
        images.append(str(tmp_path / f"{name}-{len(images)}.jpg"))
        Path(images[-1]).write_bytes(photo_jpeg(name))
    process = strata_process("embed", *images, "--json", "--server", server.address)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(100).startswith(b"{")
    process.stdout.close()  # as head does after its bytes
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_backbones_text_says_where_missing_weights_go(server: ServerHandle) -> None:
    listed = json.loads(strata("backbones", "--server", server.address, "--json").stdout)
    text = strata("backbones", "--server", server.address).stdout
    for backbone in listed["backbones"]:
        line = f"  {backbone['name']}: {backbone['weights']}"
        assert (line in text) != backbone["weights_available"], (backbone, text)
    every = all(b["weights_available"] for b in listed["backbones"])
    assert ("missing weights:" in text) != every, text


def test_health_says_serving_per_service_and_unknown_services(
    cli: Callable[..., Any], server: ServerHandle
) -> None:
    for service in ("", "strata.v1.Strata", "strata.v1.Labels"):
        assert cli("health", "--service", service) == (
            0,
            {"server": server.address, "service": service, "status": "SERVING"},
        )
    rc, document = cli("health", "--service", "strata.v1.Nothing")
    assert (rc, document["status"]) == (1, "SERVICE_UNKNOWN")
    text = strata("health", "--server", server.address)
    assert (text.returncode, text.stdout) == (0, f"{server.address}: SERVING\n")


@pytest.fixture
def collection_name(client: StrataClient) -> Iterator[str]:
    """A name for the test to create through the CLI; deleted afterwards if it exists."""
    name = f"cli-{uuid.uuid4().hex[:10]}"
    yield name
    if name in {c.name for c in client.list_collections()}:
        client.delete_collection(name)


@pytest.fixture
def photo_tree(tmp_path: Path) -> Path:
    """photos/{cats,drinks,space}/... with a broken file and a non-image file among them."""
    root = tmp_path / "photos"
    for folder in ("cats", "drinks", "space"):
        (root / folder).mkdir(parents=True)
    (root / "cats" / "chelsea.jpg").write_bytes(photo_jpeg("chelsea"))
    (root / "drinks" / "coffee.jpg").write_bytes(photo_jpeg("coffee"))
    (root / "space" / "astronaut.png").write_bytes(png(photo("astronaut")))
    (root / "space" / "rocket.JPG").write_bytes(photo_jpeg("rocket"))
    (root / "cats" / "broken.jpg").write_bytes(samples.truncated_jpeg())
    (root / "space" / "notes.txt").write_text("not an image, and not picked up")
    return root


def test_index_over_several_streams_stores_each_file_once_and_reports_as_one(
    cli: Callable[..., Any], client: StrataClient, collection_name: str, photo_tree: Path
) -> None:
    cwd = photo_tree.parent
    assert cli("collections", "create", collection_name)[0] == 0
    rc, indexed = cli("index", "photos", "--collection", collection_name, "--streams", "3", cwd=cwd)
    assert rc == 1 and indexed["added"] == 4 and indexed["unchanged"] == 0
    assert [f["uri"] for f in indexed["failed"]] == ["photos/cats/broken.jpg"]
    listed = {c.name: c for c in client.list_collections()}
    assert listed[collection_name].items == 4
    rc, again = cli("index", "photos", "--collection", collection_name, "--streams", "8", cwd=cwd)
    assert again["added"] == 0 and again["unchanged"] == 4  # more streams than files
    rc, refused = cli("index", "photos", "--collection", collection_name, "--streams", "0", cwd=cwd)
    assert rc == 2 and "--streams" in refused["error"]["message"]


def test_index_meta_tags_the_images_it_adds(
    cli: Callable[..., Any], collection_name: str, photo_tree: Path
) -> None:
    cwd = photo_tree.parent
    assert cli("collections", "create", collection_name)[0] == 0
    meta = ("--meta", "half=odd", "--meta", "shot=a=b")  # the value keeps any further '='
    rc, _ = cli("index", "photos/space", "--collection", collection_name, *meta, cwd=cwd)
    assert rc == 0
    rc, _ = cli("index", "photos/drinks", "--collection", collection_name, cwd=cwd)
    assert rc == 0
    rc, odd = cli("items", "list", "--collection", collection_name, "--meta", "half=odd")
    assert rc == 0 and sorted(i["uri"] for i in odd["items"]) == [
        "photos/space/astronaut.png",
        "photos/space/rocket.JPG",
    ]
    assert all(i["metadata"] == {"half": "odd", "shot": "a=b"} for i in odd["items"]), odd
    rc, refused = cli("index", "photos", "--collection", collection_name, "--meta", "odd", cwd=cwd)
    assert rc == 2 and "KEY=VALUE" in refused["error"]["message"]


def test_layers_json(cli: Callable[..., Any]) -> None:
    rc, doc = cli("layers")
    assert rc == 0 and doc["backbone"] == "efficientnet_lite0"
    layers = {layer["name"]: layer for layer in doc["layers"]}
    presets = {p: layer for layer in doc["layers"] for p in layer["presets"]}
    assert set(presets) == set(PRESETS)
    assert presets["edges"]["stride"] == 4 and presets["semantics"]["stride"] is None
    assert all(set(x) == {"name", "channels", "stride", "presets"} for x in doc["layers"])
    assert layers["blocks.3"]["channels"] > 0
    rc, only = cli("layers", "--backbone", "resnet50", "--presets")
    assert rc == 0 and [x["presets"] for x in only["layers"]] == [
        ["edges"],
        ["parts"],
        ["semantics"],
    ]


def test_collections_create_list_delete(cli: Callable[..., Any], collection_name: str) -> None:
    rc, created = cli("collections", "create", collection_name, "--depths", "edges,blocks.3")
    assert rc == 0
    assert created["name"] == collection_name and created["depths"] == ["edges", "blocks.3"]
    assert created["backbone"] == "efficientnet_lite0" and created["pooling"] == "avg"

    rc, listed = cli("collections", "list")
    assert rc == 0
    [mine] = [c for c in listed["collections"] if c["name"] == collection_name]
    assert {"name", "backbone", "depths", "items", "vectors"} <= set(mine)
    assert mine["items"] == 0 and mine["vectors"] == {"edges": 0, "blocks.3": 0}

    rc, error = cli("collections", "create", collection_name)
    assert rc != 0 and error["error"]["code"] == "ALREADY_EXISTS"
    assert collection_name in error["error"]["message"]

    rc, deleted = cli("collections", "delete", collection_name)
    assert rc == 0 and deleted == {"deleted": collection_name}
    rc, listed = cli("collections", "list")
    assert collection_name not in {c["name"] for c in listed["collections"]}


def test_index_folder_tree_search_and_labels(
    cli: Callable[..., Any], collection_name: str, photo_tree: Path
) -> None:
    cwd = photo_tree.parent
    assert cli("collections", "create", collection_name)[0] == 0
    rc, indexed = cli(
        "index", "photos", "--collection", collection_name, "--labels-from-folders", cwd=cwd
    )
    assert rc == 1  # one file failed; the rest are stored
    assert indexed["added"] == 4
    assert indexed["failed"] == [
        {"uri": "photos/cats/broken.jpg", "error": indexed["failed"][0]["error"]}
    ]
    assert "truncated" in indexed["failed"][0]["error"].lower()

    rc, listed = cli("collections", "list")
    [mine] = [c for c in listed["collections"] if c["name"] == collection_name]
    assert mine["items"] == 4 and mine["vectors"] == dict.fromkeys(PRESETS, 4)

    # Search by image: every depth by default; the uri is the path as given when indexing.
    rc, found = cli(
        "search", "photos/cats/chelsea.jpg", "--collection", collection_name, "-k", "2", cwd=cwd
    )
    assert rc == 0
    [query] = found["queries"]
    assert query["query"] == "photos/cats/chelsea.jpg"
    assert list(query["results"]) == PRESETS
    for hits in query["results"].values():
        assert len(hits) == 2
        assert all(set(h) == {"id", "uri", "score", "labels"} for h in hits)
        assert hits[0]["uri"] == "photos/cats/chelsea.jpg" and hits[0]["labels"] == ["cats"]
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    cat_id = query["results"]["semantics"][0]["id"]

    # Search by id at chosen depths, with a label filter.
    rc, by_id = cli(
        "search", "--id", str(cat_id), "--collection", collection_name,
        "--depth", "semantics", "--depth", "edges", "--label", "space", "-k", "5",
    )  # fmt: skip
    assert rc == 0
    [query] = by_id["queries"]
    assert query["query"] == cat_id
    assert list(query["results"]) == ["semantics", "edges"]
    for hits in query["results"].values():
        assert sorted(h["uri"] for h in hits) == [
            "photos/space/astronaut.png",
            "photos/space/rocket.JPG",
        ]
        assert all(h["labels"] == ["space"] for h in hits)

    # Indexing again changes nothing.
    rc, again = cli("index", "photos/drinks", "--collection", collection_name, cwd=cwd)
    assert rc == 0 and again["added"] == 0 and again["unchanged"] == 1 and again["failed"] == []


def test_classify_json(cli: Callable[..., Any], tmp_path: Path) -> None:
    (tmp_path / "chelsea.jpg").write_bytes(photo_jpeg("chelsea"))
    (tmp_path / "coffee.png").write_bytes(png(photo("coffee")))
    rc, doc = cli("classify", "chelsea.jpg", "coffee.png", "-k", "3", cwd=tmp_path)
    assert rc == 0
    cat, cup = doc["predictions"]
    assert cat["uri"] == "chelsea.jpg" and cup["uri"] == "coffee.png"
    assert cat["top"][0]["label"] in CAT_CLASSES, cat
    assert cup["top"][0]["label"] == "espresso", cup
    for prediction in (cat, cup):
        assert len(prediction["top"]) == 3
        # Each class carries its WordNet id and hypernym path (issue 15).
        assert all(set(t) == {"label", "score", "wnid", "path"} for t in prediction["top"])
        assert 0 < prediction["top"][0]["score"] <= 1


def test_plain_text_output(server: ServerHandle, tmp_path: Path) -> None:
    (tmp_path / "coffee.jpg").write_bytes(photo_jpeg("coffee"))
    done = strata("classify", "coffee.jpg", "--server", server.address, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("coffee.jpg: espresso")


def test_server_from_environment(server: ServerHandle) -> None:
    done = strata("collections", "list", "--json", env={"STRATA_SERVER": server.address})
    assert done.returncode == 0 and "collections" in json.loads(done.stdout)


@pytest.mark.parametrize(
    ("args", "code", "mentions"),
    [
        (("search", "missing.jpg", "--collection", "x"), "USAGE", "missing.jpg"),
        (("search", "--collection", "no-such-collection", "--id", "1"), "NOT_FOUND", "no-such"),
        (("collections", "create", "bad name"), "INVALID_ARGUMENT", "bad name"),
        (("collections", "create", "ok-name", "--backbone", "nope"), "NOT_FOUND", "nope"),
        (("layers", "--backbone", "nope"), "NOT_FOUND", "nope"),
        (("items", "get", "1", "--collection", "no-such-collection"), "NOT_FOUND", "no-such"),
    ],
)
def test_errors_give_exit_code_and_json_error(
    cli: Callable[..., Any], args: tuple[str, ...], code: str, mentions: str
) -> None:
    rc, doc = cli(*args)
    assert rc != 0
    assert doc["error"]["code"] == code
    assert mentions in doc["error"]["message"]


def test_not_an_image_query_is_refused(
    cli: Callable[..., Any], collection_name: str, tmp_path: Path
) -> None:
    assert cli("collections", "create", collection_name, "--depths", "semantics")[0] == 0
    (tmp_path / "fake.jpg").write_bytes(samples.text())
    rc, doc = cli("search", "fake.jpg", "--collection", collection_name, cwd=tmp_path)
    assert rc == 1 and doc["error"]["code"] == "INVALID_ARGUMENT"
    assert "fake.jpg" in doc["error"]["message"]


def test_unreachable_server(tmp_path: Path) -> None:
    port = free_port()
    done = strata(
        "collections", "list", "--json", "--server", f"127.0.0.1:{port}", "--timeout", "5"
    )
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"]["code"] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


# -- strata serve ------------------------------------------------------------------------------


def test_serve_starts_and_stops_on_sigterm(
    tmp_path: Path, database_kind: str, new_database_url: Callable[[], str]
) -> None:
    port = free_port()
    data = tmp_path / "strata-data"
    args = ["serve", "--listen", f"127.0.0.1:{port}", "--data", str(data)]
    if database_kind == "postgresql":
        args += ["--database", new_database_url()]
    process = strata_process(*args, text=True)
    try:
        # `strata health --wait` returns once the server is warm and says SERVING.
        ready = strata("health", "--wait", "240", "--server", f"127.0.0.1:{port}", "--json")
        assert ready.returncode == 0, (ready.stdout, ready.stderr)
        assert json.loads(ready.stdout)["status"] == "SERVING"
        assert process.stdout is not None
        seen = []
        for line in process.stdout:  # "serving on ..." is printed once it listens
            seen.append(line)
            if "serving on" in line:
                break
        assert f"serving on 127.0.0.1:{port}" in "".join(seen), (seen, process.poll())
        name = f"serve-{uuid.uuid4().hex[:6]}"
        created = strata("collections", "create", name, "--depths", "edges", "--server",
                         f"127.0.0.1:{port}", "--json")  # fmt: skip
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout)["name"] == name
        if database_kind == "sqlite":
            assert (data / "strata.db").is_file()
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert time.monotonic() - started < 30
        gone = strata("health", "--server", f"127.0.0.1:{port}", "--json")
        assert gone.returncode == 1
        assert json.loads(gone.stdout)["error"]["code"] == "UNAVAILABLE", gone.stdout
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stderr = process.stderr.read() if process.stderr else ""
    assert "Traceback" not in stderr, stderr
