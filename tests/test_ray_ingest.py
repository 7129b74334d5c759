"""`strata index --ray`: Ray Data ingest straight into the collection's database.

One local Ray cluster for the module (`ray.init(num_cpus=2)`); real Lite0 weights, real
photos, real SQLite/PostgreSQL (STRATA_TEST_DATABASE), a real server to compare with.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ServerHandle
from sqlalchemy import select

from indexer.catalog.collections import create_collection
from indexer.catalog.context import Context
from indexer.core.settings import Settings
from indexer.store import repository
from indexer.store.database import create_database_engine, make_session_factory
from indexer.store.models import Item
from service.cli.main import main as strata
from service.client import ImageToAdd
from service.image_files import skip_reason

ray = pytest.importorskip("ray", reason="Ray Data is not installed: pip install 'strata[ray]'")

COUNT = 24


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A local Ray on two CPUs; yields its address, for drivers in other processes."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield str(ray.get_runtime_context().gcs_address)
    ray.shutdown()


@pytest.fixture(scope="module")
def photo_folder(
    tmp_path_factory: pytest.TempPathFactory, small_jpegs: Callable[..., list]
) -> Path:
    """COUNT real photos in two labelled sub-folders, plus a bad file and an empty one."""
    folder = tmp_path_factory.mktemp("photos")
    for i, (_, data) in enumerate(small_jpegs(COUNT, 11)):
        path = folder / ("cats" if i % 2 else "dogs") / f"{i:03d}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
    (folder / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (folder / "cats" / "empty.png").write_bytes(b"")
    return folder


def new_collection(database_url: str, data_dir: Path, name: str = "photos") -> Settings:
    """The collection created in its database as a server would (library, no server)."""
    settings = Settings.load(env={}, data_dir=data_dir, database_url=database_url, device="cpu")
    ctx = Context.open(settings)
    try:
        create_collection(ctx, name)
    finally:
        ctx.close()
    return settings


def stored(database_url: str, collection: str) -> dict[str, dict]:
    """uri -> item fields, labels and vectors per depth, read straight from SQL."""
    engine = create_database_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            info = repository.get_collection(session, collection)
            ids = list(session.scalars(select(Item.id).where(Item.collection_id == info.id)))
            items = repository.get_items(session, info.id, ids)
            out: dict[str, dict] = {}
            for item in items.values():
                assert item.uri not in out, f"{item.uri} stored twice"
                out[item.uri] = {
                    "hash": item.content_hash,
                    "size": (item.width, item.height),
                    "labels": sorted(label.label for label in item.labels),
                    "vectors": repository.item_vectors(session, item.id),
                }
            return out
    finally:
        engine.dispose()


def good_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.jpg") if p.name != "broken.jpg")


def index_on_ray(folder: Path, database_url: str, *extra: str) -> tuple[int, Any]:
    """`strata index FOLDER --collection photos --ray local --json`: exit code, document."""
    argv = ["index", str(folder), "--collection", "photos", *extra, "--ray", "local"]
    out = io.StringIO()
    with redirect_stdout(out):
        code = strata([*argv, "--database", database_url, "--json", "--quiet"])
    assert out.getvalue(), f"strata index --ray printed nothing (exit {code})"
    return code, json.loads(out.getvalue())


def test_ray_ingest_equals_server_ingest(
    ray_cluster: str,
    photo_folder: Path,
    server: ServerHandle,
    make_server: Callable[..., ServerHandle],
    new_database_url: Callable[[], str],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    # A photo so deep that its path (its uri) is over the uri limit: refused alone, by both.
    deep = photo_folder.joinpath(*["d" * 240] * 9)
    deep.mkdir(parents=True)
    # Gone from the module's shared folder by the next test, whatever this one does.
    request.addfinalizer(lambda: shutil.rmtree(photo_folder / ("d" * 240), ignore_errors=True))
    too_long = deep / "cat.jpg"
    too_long.write_bytes(good_files(photo_folder)[0].read_bytes())
    files = sorted(p for p in photo_folder.rglob("*") if p.is_file())
    # The reference: the same files through a server's AddImages, as `strata index` sends them.
    with server.client(timeout=300) as client:
        client.create_collection("ray-reference")
        results = list(
            client.add_images(
                "ray-reference",
                [ImageToAdd(str(p), p.read_bytes(), [p.parent.name]) for p in files],
            )
        )
    server_errors = {
        r.uri: f"{r.error.message} ({r.error.code})" for r in results if r.status == "failed"
    }
    assert set(server_errors) == {
        str(photo_folder / "dogs" / "broken.jpg"),
        str(photo_folder / "cats" / "empty.png"),
        str(too_long),
    }
    assert "over the limit of 2,048" in server_errors[str(too_long)]

    database_url = new_database_url()
    new_collection(database_url, tmp_path / "writer")
    notes = photo_folder / "cats" / "notes.txt"  # not sent, and said so, as by a server
    notes.write_text("not a picture")
    try:
        code, document = index_on_ray(
            photo_folder, database_url, "--labels-from-folders", "--meta", "source=ray"
        )
    finally:
        notes.unlink()
        shutil.rmtree(photo_folder / ("d" * 240))  # before the checks of the folder below
    assert document["skipped"] == [{"uri": str(notes), "reason": skip_reason(notes)}]
    assert code == 1  # some files failed, as `strata index` says it
    assert document["added"] == COUNT and document["replaced"] == 0
    # Bad files reported with the server's words.
    assert {f["uri"]: f["error"] for f in document["failed"]} == server_errors

    reference = stored(server.settings.resolved_database_url, "ray-reference")
    ours = stored(database_url, "photos")
    assert set(ours) == set(reference) == {str(p) for p in good_files(photo_folder)}
    for uri, item in ours.items():
        expected = reference[uri]
        assert (item["hash"], item["size"], item["labels"]) == (
            expected["hash"],
            expected["size"],
            expected["labels"],
        )
    for depth in ("edges", "parts", "semantics"):
        a = np.stack([ours[u]["vectors"][depth] for u in sorted(ours)])
        b = np.stack([reference[u]["vectors"][depth] for u in sorted(ours)])
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert cosine.min() >= 0.999, f"{depth}: min cosine {cosine.min():.5f}"

    # A rerun adds nothing; a server started on that database finds the photos by content.
    _, again = index_on_ray(photo_folder, database_url)
    assert (again["added"], again["unchanged"], len(again["failed"])) == (0, COUNT, 2)
    reader = make_server(database_url=database_url)
    probe = good_files(photo_folder)[3]
    with reader.client(timeout=300) as client:
        [result] = client.search("photos", [probe.read_bytes()], depths=["semantics"], k=1)
        tagged = client.list_items("photos", page_size=1000, metadata={"source": "ray"})
    assert result.results[0].hits[0].uri == str(probe)
    assert tagged.total == COUNT  # --meta, as through a server
    reader.stop()


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _embedder_pids() -> list[int]:
    """Processes of the embedding actors of this module's cluster (Ray titles them after
    the stage; its workers descend from the raylet this process started)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if not (cmdline.startswith(b"ray::") and b"MapBatches(Embedder)" in cmdline):
                continue
            ancestor = int(entry.name)
            while ancestor > 1 and ancestor != os.getpid():
                ancestor = _parent(ancestor)
            if ancestor == os.getpid():
                pids.append(int(entry.name))
    return pids


def _count(database_url: str) -> int:
    engine = create_database_engine(database_url)
    try:
        with make_session_factory(engine)() as session:
            return repository.count_items(session, repository.get_collection(session, "photos").id)
    finally:
        engine.dispose()


DRIVER = """
import sys
from pathlib import Path
from indexer.core.settings import Settings
from indexer.distributed import ray_ingest
folder, database_url, address = sys.argv[1:4]
files = [ray_ingest.FileToIndex(str(p), p) for p in sorted(Path(folder).rglob("*.jpg"))]
settings = Settings.load(env={}, database_url=database_url, device="cpu", batch_size=4)
options = ray_ingest.RayIngestOptions(decode_batch=4, write_batch=4)
ray_ingest.ingest(settings, "photos", files, address, options)
"""


def test_killed_actor_and_driver_then_rerun_leave_one_item_per_file(
    ray_cluster: str,
    tmp_path: Path,
    small_jpegs: Callable[..., list],
    new_database_url: Callable[[], str],
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    photos = small_jpegs(64, 12)
    for i, (_, data) in enumerate(photos):
        (folder / f"{i:03d}.jpg").write_bytes(data)
    database_url = new_database_url()
    settings = new_collection(database_url, tmp_path / "writer")

    # The driver in its own process, on the module's cluster (as `--ray ADDRESS` connects
    # to one), so that it can be SIGKILLed mid-run.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(folder), database_url, ray_cluster],
        env=env,
        cwd=Path(__file__).parent.parent,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "driver.log", "wb"),  # noqa: SIM115 (closed with the process)
    )

    def wait_for(condition: Callable[[], bool], what: str, timeout: float = 600) -> None:
        began = time.monotonic()
        while not condition():
            if driver.poll() is not None:
                pytest.fail(
                    f"driver exited ({driver.returncode}) before {what}:\n"
                    + (tmp_path / "driver.log").read_text(errors="replace")[-3000:]
                )
            if time.monotonic() - began > timeout:
                pytest.fail(
                    f"timed out waiting for {what}:\n"
                    + (tmp_path / "driver.log").read_text(errors="replace")[-3000:]
                )
            time.sleep(0.05)

    try:
        wait_for(lambda: _count(database_url) > 0, "the first committed batch")
        actors = _embedder_pids()
        assert actors, "no embedding actor process found"
        for pid in actors:
            os.kill(pid, signal.SIGKILL)
        killed_at = _count(database_url)
        # Ray restarts the actor and retries its batch: commits go on...
        wait_for(lambda: _count(database_url) > killed_at, "a commit after the actor kill")
        # ...until the driver dies mid-run, a transaction perhaps open.
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(30)
    at_kill = _count(database_url)
    assert 0 < at_kill < len(photos), "the driver was not killed mid-run"

    # The rerun, on the same cluster: exactly one item per file, each with all its vectors.
    from indexer.distributed import ray_ingest

    files = [ray_ingest.FileToIndex(str(p), p) for p in sorted(folder.glob("*.jpg"))]
    rerun = ray_ingest.ingest(settings, "photos", files, ray_ingest.LOCAL)
    assert rerun.failures == []
    assert rerun.unchanged >= at_kill and rerun.added == len(photos) - rerun.unchanged
    items = stored(database_url, "photos")
    assert sorted(items) == [str(p) for p in sorted(folder.glob("*.jpg"))]
    for uri, item in items.items():
        assert sorted(item["vectors"]) == ["edges", "parts", "semantics"], uri
