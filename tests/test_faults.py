"""Faults other than a kill: PostgreSQL connections terminated and the database refusing
connections during ingest and searches, SQLite locked by another process, the data folder's
disk filling up, a read-only data folder, and start-up errors of `strata serve` (bad port,
TLS key of another certificate) that must read as one clear line, not a traceback."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import POSTGRES_ADMIN_URL, ServerHandle, start_server

from indexer.core.errors import FailedPrecondition
from service.client import ImageToAdd, StrataClient, StrataClientError
from service.settings import ServiceSettings

#: What a call may answer while the database is away: UNAVAILABLE with a retry hint.
AWAY = "UNAVAILABLE"


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _admin(sql: str, *args: object) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql, args)


def _terminate(database: str) -> None:
    _admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        database,
    )


def _health(server: ServerHandle) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(server.address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def _wait_health(server: ServerHandle, wanted: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while _health(server) != wanted:
        assert time.monotonic() < deadline, f"health never became {wanted}"
        time.sleep(0.1)


@pytest.fixture
def postgres_only(database_kind: str) -> None:
    if database_kind != "postgresql":
        pytest.skip("PostgreSQL faults: run with STRATA_TEST_DATABASE=postgresql")


@pytest.fixture
def sqlite_only(database_kind: str) -> None:
    if database_kind != "sqlite":
        pytest.skip("a SQLite file lock: run with STRATA_TEST_DATABASE=sqlite")


# -- PostgreSQL connections killed and refused ---------------------------------------------


def test_postgres_connections_killed_during_ingest_and_searches(
    postgres_only: None,
    make_server: Callable[..., ServerHandle],
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
) -> None:
    server = make_server()
    database = _database_name(server.settings.database_url)
    images = small_jpegs(160, seed=51, sides=(32, 64))
    acked: dict[str, int] = {}
    codes: list[str] = []
    messages: list[str] = []
    stop = threading.Event()
    with server.client(timeout=120) as client:
        client.create_collection("pgkill")

    def ingest() -> None:
        with server.client(timeout=120) as client:
            for attempt in range(40):
                todo = [ImageToAdd(u, d) for u, d in images if u not in acked]
                if not todo:
                    return
                try:
                    for result in client.add_images("pgkill", todo):
                        assert result.status in ("added", "unchanged"), result
                        acked[result.uri] = result.id
                except StrataClientError as exc:
                    codes.append(exc.code)
                    messages.append(exc.details)
                    time.sleep(0.05 * attempt)

    def search() -> None:
        with server.client(timeout=30) as client:
            while not stop.is_set():
                try:
                    client.search("pgkill", [images[0][1]], k=3)
                except StrataClientError as exc:
                    codes.append(exc.code)
                    messages.append(exc.details)

    threads = [threading.Thread(target=ingest), threading.Thread(target=search)]
    for thread in threads:
        thread.start()
    kills = 0
    while threads[0].is_alive() and kills < 12:
        time.sleep(0.4)
        _terminate(database)
        kills += 1
    threads[0].join(300)
    stop.set()
    threads[1].join(60)
    assert set(codes) <= {AWAY}, (set(codes), messages[:3])
    assert all("retry" in m for m in messages), messages[:3]
    assert len(acked) == len(images), "the ingest did not finish after the faults"
    with server.client(timeout=120) as client:  # reconnected by itself; nothing acked lost
        assert client.get_collection("pgkill").items == len(images)
        for uri, item_id in list(acked.items())[:20]:
            assert client.get_item("pgkill", item_id).uri == uri
    print(f"{kills} terminations, {len(codes)} UNAVAILABLE answers, 0 other errors")


def test_postgres_away_means_unavailable_and_not_serving(
    postgres_only: None,
    make_server: Callable[..., ServerHandle],
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
) -> None:
    server = make_server()
    database = _database_name(server.settings.database_url)
    with server.client(timeout=60) as client:
        client.create_collection("pgaway")
        ((uri, data),) = small_jpegs(1, seed=52)
        (first,) = client.add_images("pgaway", [ImageToAdd(uri, data)])
    try:
        # The database refuses new connections and loses its current ones: as a restart does.
        _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        _terminate(database)
        _wait_health(server, "NOT_SERVING")
        with server.client(timeout=30) as client:
            for call in (
                lambda: client.get_collection("pgaway"),
                lambda: client.search("pgaway", [data], k=1),
                lambda: list(client.add_images("pgaway", [ImageToAdd("b.jpg", data)])),
            ):
                with pytest.raises(StrataClientError) as caught:
                    call()
                assert caught.value.code == AWAY, caught.value
                assert "retry" in caught.value.details
    finally:
        _admin(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    _wait_health(server, "SERVING")
    with server.client(timeout=60) as client:
        assert client.get_item("pgaway", first.id).uri == uri
        assert client.search("pgaway", [data], k=1)[0].results[0].hits[0].id == first.id


# -- SQLite locked by another process -------------------------------------------------------


def test_sqlite_locked_by_another_process_is_a_clear_error_not_a_hang(
    sqlite_only: None,
    make_server: Callable[..., ServerHandle],
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
) -> None:
    server = make_server(sqlite_busy_timeout_s=2.0)
    with server.client(timeout=60) as client:
        client.create_collection("locked")
    path = server.settings.resolved_database_url.split("///", 1)[1]
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
            path,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        ((uri, data),) = small_jpegs(1, seed=53)
        began = time.monotonic()
        with server.client(timeout=60) as client, pytest.raises(StrataClientError) as caught:
            list(client.add_images("locked", [ImageToAdd(uri, data)]))
        waited = time.monotonic() - began
        assert caught.value.code == AWAY, caught.value
        assert "locked" in caught.value.details and "another process" in caught.value.details
        assert waited < 30, f"waited {waited:.0f}s"
    finally:
        holder.kill()
        holder.wait(10)
    with server.client(timeout=60) as client:  # the lock gone, writes go through
        (result,) = client.add_images("locked", [ImageToAdd(uri, data)])
        assert result.status == "added"


# -- disk full and read-only data folders ---------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *options: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    flags = ",".join((f"size={size}", *options))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", flags, "tmpfs", str(path)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path, leave_bytes: int) -> Path:
    """A file that takes all but `leave_bytes` of the folder's filesystem."""
    free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
    filler = folder / "filler.bin"
    with open(filler, "wb", buffering=0) as out:  # unbuffered: tell() is what reached disk
        remaining = max(0, free - leave_bytes)
        chunk = b"\0" * (1 << 20)
        try:
            while remaining > 0:
                written = out.write(chunk[: min(len(chunk), remaining)])
                remaining -= written
        except OSError as exc:
            # The server's background index save wrote to the same disk meanwhile and
            # the disk filled first: give `leave_bytes` back so the state is the one asked.
            if exc.errno != errno.ENOSPC:
                raise
            out.truncate(max(0, out.tell() - leave_bytes))
    return filler


@pytest.mark.slow
def test_disk_full_is_resource_exhausted_and_ingest_resumes_when_space_is_freed(
    make_server: Callable[..., ServerHandle],
    new_database_url: Callable[[], str],
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
    tmp_path: Path,
) -> None:
    images = small_jpegs(120, seed=54, sides=(32, 64))
    with tmpfs(tmp_path / "small", "20m") as folder:
        data_dir = folder / "data"
        database_url = new_database_url()
        if database_url.startswith("sqlite"):
            database_url = f"sqlite:///{data_dir / 'strata.db'}"  # the database on the small disk
        server = make_server(
            data_dir=data_dir, database_url=database_url, index_save_interval_s=0.2
        )
        acked: dict[str, int] = {}
        with server.client(timeout=120) as client:
            client.create_collection("full")
            first = [ImageToAdd(u, d) for u, d in images[:20]]
            acked.update({r.uri: r.id for r in client.add_images("full", first)})
            filler = _fill(folder, leave_bytes=64 * 1024)
            refusal = None
            for start in range(20, len(images), 10):
                batch = [ImageToAdd(u, d) for u, d in images[start : start + 10]]
                try:
                    for result in client.add_images("full", batch):
                        assert result.status == "added", result
                        acked[result.uri] = result.id
                except StrataClientError as exc:
                    refusal = exc
                    break
                time.sleep(0.3)  # let a background save meet the full disk
            assert refusal is not None, "the disk never filled"
            assert refusal.code == "RESOURCE_EXHAUSTED", refusal
            assert str(folder) in refusal.details, refusal.details
            assert server.running.ctx.indexes.save_error is not None or "disk" in refusal.details
            # Space freed: ingest resumes by itself, nothing acknowledged was lost.
            filler.unlink()
            rest = [ImageToAdd(u, d) for u, d in images if u not in acked]
            for result in client.add_images("full", rest):
                assert result.status == "added", result
                acked[result.uri] = result.id
            assert client.get_collection("full").items == len(images)
        server.stop()
        # Nothing damaged: a new server on the same folder opens every index without a
        # rebuild, level with SQL, and finds each item.
        settings = ServiceSettings.load(
            env={}, data_dir=data_dir, database_url=database_url, device="cpu"
        )
        again = start_server(settings)
        try:
            assert again.running.ctx.indexes.rebuilds == 0
            with again.client(timeout=120) as client:
                info = client.get_collection("full")
                assert info.items == len(images)
                for depth in info.depths:
                    assert depth.index_vectors == depth.vectors == len(images), depth
                sample = sorted(acked)[:10]
                found = client.search("full", [acked[u] for u in sample], k=1)
                for uri, hit in zip(sample, found, strict=True):
                    assert hit.results[0].hits[0].id == acked[uri]
        finally:
            again.stop()


def test_read_only_data_folder_is_a_clear_start_up_error(
    new_database_url: Callable[[], str], tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "ro", "1m", "ro") as folder:
        settings = ServiceSettings.load(
            env={}, data_dir=folder, database_url=new_database_url(), device="cpu"
        )
        with pytest.raises(FailedPrecondition, match="not writable") as caught:
            start_server(settings)
        assert str(folder) in str(caught.value)
        done = subprocess.run(
            [
                *(sys.executable, "-m", "service.cli", "serve", "--listen", "127.0.0.1:0"),
                *("--data", str(folder), "--device", "cpu"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2
        assert "not writable" in done.stderr and "Traceback" not in done.stderr, done.stderr


# -- start-up errors of `strata serve` ------------------------------------------------------


def _serve_fails(*argv: str, tmp_path: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--data", str(tmp_path / "d"), *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stderr


def test_out_of_range_port_is_refused(tmp_path: Path) -> None:
    stderr = _serve_fails("--listen", "127.0.0.1:99999", tmp_path=tmp_path)
    assert "99999" in stderr and "out of range" in stderr
    metrics = ("--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:99999")
    stderr = _serve_fails(*metrics, tmp_path=tmp_path)
    assert "metrics address" in stderr and "out of range" in stderr


def test_a_data_folder_that_is_a_file_is_named_as_such(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    stderr = _serve_fails("--listen", "127.0.0.1:0", "--data", str(afile), tmp_path=tmp_path)
    assert f"the data folder {afile} is not a folder" in stderr, stderr  # not "File exists"


def test_busy_listen_address_is_refused(server: ServerHandle, tmp_path: Path) -> None:
    """gRPC would share the port (SO_REUSEPORT) and split the clients between two servers."""
    # A server that started after all would run on: fail in a minute rather than in five.
    stderr = _serve_fails("--listen", server.address, "--no-warm-up", tmp_path=tmp_path, timeout=60)
    assert f"cannot listen on {server.address}" in stderr and "in use" in stderr, stderr
    with StrataClient(server.address, timeout=30) as client:
        client.list_collections()  # the first server still has the port


def test_busy_metrics_address_names_the_flag(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics = f"127.0.0.1:{taken.getsockname()[1]}"
        stderr = _serve_fails(
            *("--listen", "127.0.0.1:0", "--no-warm-up", "--metrics-listen", metrics),
            tmp_path=tmp_path,
        )
    assert f"cannot serve metrics on {metrics}" in stderr and "--metrics-listen" in stderr


def test_tls_key_of_another_certificate_says_so(tmp_path: Path) -> None:
    pytest.importorskip("cryptography", reason="cryptography makes the test certificates")
    from test_security import make_authority

    one, other = make_authority("one"), make_authority("other")
    (tmp_path / "server.crt").write_bytes(one.server.cert)
    (tmp_path / "other.key").write_bytes(other.server.key)
    stderr = _serve_fails(
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        str(tmp_path / "server.crt"),
        "--tls-key",
        str(tmp_path / "other.key"),
        tmp_path=tmp_path,
    )
    assert "does not match the certificate" in stderr, stderr


def _serve_fails_with(variable: str, value: str, tmp_path: Path) -> str:
    """`strata serve` with one bad STRATA_* variable: exit 2, one line, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve", "--data", str(tmp_path / "d")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, variable: value},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stderr


def test_bad_setting_in_the_environment_is_one_line(tmp_path: Path) -> None:
    assert "STRATA_BATCH_SIZE" in _serve_fails_with("STRATA_BATCH_SIZE", "many", tmp_path)


def test_bad_boolean_setting_lists_the_words(tmp_path: Path) -> None:
    stderr = _serve_fails_with("STRATA_WARM_UP", "maybe", tmp_path)
    assert "STRATA_WARM_UP='maybe'" in stderr and "yes" in stderr, stderr


def test_client_reaches_a_server_after_a_fault(server: ServerHandle) -> None:
    # The shared server is untouched by the faults above: still serving.
    with StrataClient(server.address, timeout=30) as client:
        client.list_collections()


def test_a_commit_whose_answer_is_lost_still_reaches_the_writers_own_index(
    make_server: Callable[..., ServerHandle], small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    """The connection dropped after COMMIT reached the database, before its answer: the
    client sees an error and resends, the resend is `unchanged`, and the replica that wrote
    it never put it in its index (its change-log follower skips its own rows). The image was
    in SQL and on every other replica, but this one never found it until a restart. Now the
    writer marks the collection and its follower levels the index with SQL."""
    from sqlalchemy import event

    server = make_server(replica_poll_s=0.2)
    ctx = server.running.ctx
    photos = small_jpegs(3, seed=77)
    lost = {"armed": True}

    def lose_the_answer(session: object) -> None:
        # Only a request's commit: the follower commits too (it prunes the change log).
        if lost["armed"] and threading.current_thread().name != "replica-follower":
            lost["armed"] = False
            raise ConnectionResetError("the answer to COMMIT was lost (test)")

    with server.client(timeout=120) as client:
        client.create_collection("lost-answer")
        event.listen(ctx.sessions, "after_commit", lose_the_answer)
        try:
            with pytest.raises(StrataClientError):
                list(client.add_images("lost-answer", [ImageToAdd(*photos[0])]))
        finally:
            event.remove(ctx.sessions, "after_commit", lose_the_answer)
        [again] = client.add_images("lost-answer", [ImageToAdd(*photos[0])])
        assert again.status == "unchanged"  # it was committed
        deadline = time.monotonic() + 30
        while True:
            [result] = client.search("lost-answer", [photos[0][1]], k=1)
            hits = {r.depth: [h.id for h in r.hits] for r in result.results}
            if all(ids == [again.id] for ids in hits.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert all(ids == [again.id] for ids in hits.values()), hits
        # Later writes go on as before.
        [later] = client.add_images("lost-answer", [ImageToAdd(*photos[1])])
        assert later.status == "added"
        info = client.get_collection("lost-answer")
        assert info.items == 2 and all(d.vectors == 2 for d in info.depths)


def test_a_stalled_database_turns_health_not_serving_and_metrics_keep_answering(
    postgres_only: None,
    make_server: Callable[..., ServerHandle],
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
) -> None:
    """Tables locked for a while (a long migration, a stuck transaction): request threads
    block in SQL past their clients' deadlines. The health probe used to wait for a thread
    behind them, so health said SERVING with the lag far past its limit; and /metrics (the
    chart's liveness probe) read collection names from SQL on every scrape and hung, which
    would restart healthy pods."""
    import psycopg
    from conftest import free_port

    metrics = f"127.0.0.1:{free_port()}"
    server = make_server(replica_max_lag_s=2.0, metrics_listen=metrics)
    database = _database_name(server.settings.database_url)
    with server.client(timeout=60) as client:
        client.create_collection("stall")
        ids = [
            r.id
            for r in client.add_images("stall", [ImageToAdd(*p) for p in small_jpegs(4, seed=53)])
        ]

    def scrape() -> str:
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as response:
            return response.read().decode()

    assert 'strata_index_vectors{collection="stall"' in scrape()
    stop = threading.Event()

    def search_by_id(item_id: int) -> None:
        with StrataClient(server.address, timeout=3) as client:
            while not stop.is_set():
                with contextlib.suppress(StrataClientError):
                    client.search("stall", [item_id], k=1)

    searchers = [threading.Thread(target=search_by_id, args=(ids[n % 4],)) for n in range(12)]
    admin_url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    with psycopg.connect(admin_url) as lock_holder:
        lock_holder.execute("LOCK TABLE items, change_log IN ACCESS EXCLUSIVE MODE")
        for thread in searchers:
            thread.start()
        try:
            _wait_health(server, "NOT_SERVING", timeout=15)
            assert 'strata_index_vectors{collection="stall"' in scrape()
        finally:
            lock_holder.rollback()
            stop.set()
            for thread in searchers:
                thread.join(30)
    _wait_health(server, "SERVING", timeout=30)
