"""Database faults and races give clear answers, not INTERNAL or a hang, on the real SQLite
and PostgreSQL stores (STRATA_TEST_DATABASE=sqlite|postgresql):

- the same collection created (or deleted) on several replicas at once: one wins, the
  others get ALREADY_EXISTS (NOT_FOUND), as one after the other would;
- a read-only database (a standby after a failover): UNAVAILABLE saying so, with a hint,
  and writes work again once it is writable, without restarting the server;
- a PostgreSQL host that takes TCP but never answers: a connect timeout, not a hang;
- `strata serve` with a URL that is not a PostgreSQL or SQLite one, a database that refuses
  connections, or a schema migrated by a newer Strata: one line and exit status 2."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import POSTGRES_ADMIN_URL, ServerHandle
from helpers import free_port
from sqlalchemy import event, text

from indexer.catalog.collections import create_collection, delete_collection, get_collection
from indexer.catalog.context import Context
from indexer.catalog.items import delete_items
from indexer.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    StrataError,
)
from indexer.core.settings import Settings
from indexer.core.vocabulary import DEFAULT_BACKBONE
from indexer.store import repository
from indexer.store.database import (
    POSTGRES_CONNECT_ARGS,
    create_database_engine,
    create_schema,
)
from service.client import StrataClientError

#: The hint of every error about a database URL that is not one Strata takes.
URL_HINT = "use postgresql+psycopg://USER@HOST:PORT/DB or sqlite:///PATH"
#: Threads (replicas) racing on one collection.
RACERS = 4


@pytest.fixture()
def ctx(tmp_path: Path, new_database_url: Callable[[], str]) -> Iterator[Context]:
    context = Context.open(
        Settings.load(
            env={}, data_dir=tmp_path / "data", database_url=new_database_url(), device="cpu"
        )
    )
    context.backbones.get(DEFAULT_BACKBONE)  # loaded once, before any race
    try:
        yield context
    finally:
        context.close()


def _race(calls: list[Callable[[], Any]]) -> list[Exception | str]:
    """Run `calls` in threads at once; each outcome is "ok" or the exception raised."""
    outcomes: list[Exception | str] = [""] * len(calls)
    start = threading.Barrier(len(calls))

    def run(n: int) -> None:
        start.wait()
        try:
            calls[n]()
            outcomes[n] = "ok"
        except Exception as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return outcomes


def _kinds(outcomes: list[Exception | str]) -> list[str]:
    """The outcomes sorted: "ok", a gRPC status name, or the library error's class name."""

    def kind(outcome: Exception | str) -> str:
        if isinstance(outcome, StrataClientError):
            return outcome.code
        return outcome if isinstance(outcome, str) else type(outcome).__name__

    return sorted(map(kind, outcomes))


@contextmanager
def _all_reach(ctx: Context, statement: str, *others: Context) -> Iterator[None]:
    """Hold each racer before its first SQL statement starting with `statement` until all
    have come that far: the race windows as wide as they can be, every run. Not on SQLite,
    whose writers take turns from their first statement (BEGIN IMMEDIATE): they never all
    come that far at once."""
    if ctx.engine.dialect.name == "sqlite":
        yield
        return
    gate = threading.Barrier(RACERS, timeout=30)
    passed: set[int] = set()

    def hold(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        me = threading.get_ident()
        if sql.lstrip().upper().startswith(statement) and me not in passed:
            passed.add(me)
            with suppress(threading.BrokenBarrierError):
                gate.wait()

    engines = [c.engine for c in (ctx, *others)]  # other replicas on the same database
    for engine in engines:
        event.listen(engine, "before_cursor_execute", hold)
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", hold)


# -- 1. races between replicas -------------------------------------------------------------


def test_concurrent_creates_of_one_name_give_already_exists(ctx: Context) -> None:
    """Every racer checks that the name is free, then all insert: the losers' inserts hit
    the unique constraint (PostgreSQL), which must read as the sequential AlreadyExists."""
    for round_ in range(3):
        name = f"race-{round_}-{uuid.uuid4().hex[:6]}"
        with _all_reach(ctx, "INSERT INTO COLLECTIONS"):
            outcomes = _race([partial(create_collection, ctx, name)] * RACERS)
        assert _kinds(outcomes) == ["AlreadyExists"] * (RACERS - 1) + ["ok"], outcomes
        assert get_collection(ctx, name).name == name
        with pytest.raises(AlreadyExists) as sequential:
            create_collection(ctx, name)
        # The losers' error is the sequential one, word for word.
        assert {(o.message, o.hint) for o in outcomes if isinstance(o, StrataError)} == {
            (sequential.value.message, sequential.value.hint)
        }


def test_concurrent_creates_of_one_name_through_replicas(
    make_server: Callable[..., ServerHandle], new_database_url: Callable[[], str]
) -> None:
    """The operator's walk-through: real servers on one database, gRPC status codes."""
    url = new_database_url()
    replicas = [make_server(database_url=url) for _ in range(3)]
    clients = [r.client(timeout=120) for r in replicas]
    try:
        for n, client in enumerate(clients):  # each replica loads its backbone first
            client.create_collection(f"warm-{n}")
        for round_ in range(5):
            name = f"grpc-race-{round_}"
            outcomes = _race([partial(client.create_collection, name) for client in clients])
            assert _kinds(outcomes) == ["ALREADY_EXISTS"] * (len(clients) - 1) + ["ok"], outcomes
            for outcome in outcomes:
                if isinstance(outcome, StrataClientError):
                    assert outcome.message == f"collection {name!r} already exists", outcome
                    assert outcome.hint.startswith("pick another name"), outcome
    finally:
        for client in clients:
            client.close()


def test_concurrent_deletes_of_one_collection_give_not_found(ctx: Context) -> None:
    """All racers find the collection, then queue on the write lock: only the first may
    answer OK; the others must find it gone, as one after the other would."""
    for round_ in range(3):
        name = f"doomed-{round_}-{uuid.uuid4().hex[:6]}"
        create_collection(ctx, name)
        # PostgreSQL: the write-order lock; SQLite: no such statement, writers take turns.
        with _all_reach(ctx, "SELECT PG_ADVISORY_XACT_LOCK"):
            outcomes = _race([partial(delete_collection, ctx, name)] * RACERS)
        assert _kinds(outcomes) == ["NotFound"] * (RACERS - 1) + ["ok"], outcomes
        with pytest.raises(NotFound):
            get_collection(ctx, name)
        with ctx.engine.connect() as connection:
            drops = connection.execute(
                text(
                    "SELECT count(*) FROM change_log WHERE op = 'drop' AND collection_id "
                    "NOT IN (SELECT id FROM collections)"
                )
            ).scalar()
        assert drops == round_ + 1  # one drop logged per deleted collection, not one a racer


def test_concurrent_deletes_of_the_same_items_give_not_found(ctx: Context, tmp_path: Path) -> None:
    """Replicas deleting the same items at once: the first deletes them, the others find
    them gone, as one after the other would (each answered that it deleted them)."""
    name = f"items-{uuid.uuid4().hex[:6]}"
    info = create_collection(ctx, name)
    with ctx.sessions.begin() as session:
        new = [repository.NewItem(f"{n}.jpg", f"hash-{n}", 8, 8) for n in range(5)]
        ids = repository.insert_items(session, info.id, new)
    # One replica each (a process's own writes of a collection already take turns).
    replicas = [
        Context.open(replace(ctx.settings, data_dir=tmp_path / f"replica-{n}"))
        for n in range(RACERS - 1)
    ]
    try:
        with _all_reach(ctx, "SELECT PG_ADVISORY_XACT_LOCK", *replicas):
            outcomes = _race([partial(delete_items, c, name, ids) for c in (ctx, *replicas)])
    finally:
        for replica in replicas:
            replica.close()
    assert _kinds(outcomes) == ["NotFound"] * (RACERS - 1) + ["ok"], outcomes


# -- 2. a read-only database ---------------------------------------------------------------


def _admin(sql: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(sql)


def test_read_only_database_is_unavailable_with_a_hint(
    database_kind: str,
    make_server: Callable[..., ServerHandle],
    new_database_url: Callable[[], str],
) -> None:
    if database_kind != "postgresql":
        pytest.skip("default_transaction_read_only is PostgreSQL's (a standby after failover)")
    url = new_database_url()
    name = url.rsplit("/", 1)[1]
    server = make_server(database_url=url)
    with server.client(timeout=120) as client:
        client.create_collection("before")
        # As after a failover onto a standby: new sessions are read-only, old ones are gone.
        _admin(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        _admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        try:
            for attempt in range(3):  # every write, not just the first after the switch
                with pytest.raises(StrataClientError) as caught:
                    client.create_collection(f"during-{attempt}")
                error = caught.value
                assert error.code == "UNAVAILABLE", error.details
                assert "read-only" in error.message, error.details
                assert "primary" in error.hint, error.details
            with pytest.raises(StrataClientError) as caught:
                client.delete_collection("before")
            assert caught.value.code == "UNAVAILABLE", caught.value.details
            assert [c.name for c in client.list_collections()] == ["before"]  # reads still work
        finally:
            # Writable again; the server's read-only sessions are not terminated this time:
            # the server must not keep using them.
            _admin(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        # A connection the server opened while the database was read-only keeps that
        # default; the first write on one may still fail (UNAVAILABLE, so clients retry),
        # and must clear them all: the retry succeeds.
        for attempt in range(2):
            try:
                client.create_collection("after")
                break
            except StrataClientError as exc:
                assert attempt == 0 and exc.code == "UNAVAILABLE", exc.details
        client.delete_collection("before")
        assert [c.name for c in client.list_collections()] == ["after"]


# -- 3. a PostgreSQL host that never answers -----------------------------------------------


@contextmanager
def _silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a black-holing host)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for connection in accepted:
            connection.close()
        listener.close()


def _fails_within(seconds: float, call: Callable[[], Any]) -> tuple[BaseException, float]:
    """Run `call` in a thread: the error it raised and how long it took; fails the test if
    it is still running after `seconds`."""
    outcome: list[BaseException] = []
    began = time.monotonic()

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting on the database after {seconds} s"
    assert outcome, "the call succeeded against a host that never answers"
    return outcome[0], time.monotonic() - began


@pytest.mark.database_free
def test_connect_to_a_host_that_never_answers_times_out() -> None:
    with _silent_listener() as port:
        engine = create_database_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x")
        try:
            error, took = _fails_within(60, lambda: create_schema(engine))
        finally:
            engine.dispose()
    assert isinstance(error, FailedPrecondition), repr(error)
    assert "timeout" in error.message and "unreachable" in error.message, error.message
    assert took < POSTGRES_CONNECT_ARGS["connect_timeout"] + 15
    assert "reconnects by itself" not in str(error)


def test_postgresql_connections_have_keepalives(
    database_kind: str, new_database_url: Callable[[], str]
) -> None:
    if database_kind != "postgresql":
        engine = create_database_engine(new_database_url())  # SQLite: as before
        assert engine.dialect.name == "sqlite"
        engine.dispose()
        return
    engine = create_database_engine(new_database_url() + "?keepalives_idle=45")
    try:
        raw = engine.raw_connection()
        try:
            assert isinstance(raw.driver_connection, psycopg.Connection)
            parameters = raw.driver_connection.info.get_parameters()
        finally:
            raw.close()
    finally:
        engine.dispose()
    assert parameters["connect_timeout"] == "10"
    assert parameters["keepalives"] == "1"
    assert parameters["keepalives_idle"] == "45"  # the URL's own value is kept
    assert parameters["keepalives_interval"] == "10"
    assert parameters["keepalives_count"] == "3"


# -- 4. start-up errors of `strata serve` --------------------------------------------------


def _serve(database_url: str, tmp_path: Path, timeout: float = 120) -> tuple[int, list[str]]:
    """`strata serve --database URL`: its exit status and its stderr's non-empty lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    done = subprocess.run(
        [
            *(sys.executable, "-m", "service.cli", "serve", "--listen", "127.0.0.1:0"),
            *("--data", str(tmp_path / "data"), "--database", database_url, "--no-warm-up"),
            *("--device", "cpu"),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    # Log lines (Alembic says which migrations context it runs in) are not errors.
    lines = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and not re.match(r"(\d{4}-\d\d-\d\d [\d:,]+ )?INFO ", line)
    ]
    return done.returncode, lines


#: (URL, words its refusal must hold); the first three are also tried on `strata serve`.
BAD_URLS = [
    ("postgres://postgres:secret@127.0.0.1:5432/strata", "scheme 'postgres'"),
    ("mysql://postgres:secret@127.0.0.1/strata", "'mysql' database"),
    ("127.0.0.1:5432/strata", "cannot be parsed"),
    ("postgres:secret@127.0.0.1:5432/strata", "cannot be parsed"),
    ("postgresql://postgres@127.0.0.1:notaport/strata", "cannot be parsed"),
    ("postgresql+nosuchdriver://postgres@127.0.0.1/strata", "driver"),
]


@pytest.mark.database_free
@pytest.mark.parametrize(("url", "words"), BAD_URLS)
def test_a_database_url_strata_cannot_use_is_named(url: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        create_database_engine(url)
    assert caught.value.message.startswith("the database"), caught.value
    assert words in caught.value.message and caught.value.hint == URL_HINT, caught.value
    assert "secret" not in str(caught.value)  # the password is not shown


@pytest.mark.database_free
@pytest.mark.parametrize(("url", "words"), BAD_URLS[:3])
def test_serve_with_a_database_url_strata_cannot_use_is_one_line(
    url: str, words: str, tmp_path: Path
) -> None:
    status, lines = _serve(url, tmp_path)
    assert status == 2, (status, lines)
    assert len(lines) == 1, lines
    [line] = lines
    assert line.startswith("strata serve: error: the database"), line
    assert words in line and URL_HINT in line, line
    assert "secret" not in line, line


@pytest.mark.database_free
def test_refused_connection_at_start_up_has_a_start_up_hint(tmp_path: Path) -> None:
    status, lines = _serve(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x", tmp_path)
    assert status == 2, (status, lines)
    assert len(lines) == 1, lines
    [line] = lines
    assert "connection refused" in line and "unreachable" in line, line
    assert "reconnects by itself" not in line, line  # the process exits: it reconnects never
    assert "start strata again" in line and "PostgreSQL is running" in line, line


def test_a_database_that_does_not_exist_is_one_line(database_kind: str, tmp_path: Path) -> None:
    if database_kind != "postgresql":
        pytest.skip("SQLite creates a missing database file: there is no missing database to name")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    status, lines = _serve(f"{base}/strata_no_such_database", tmp_path)
    assert status == 2, (status, lines)
    assert len(lines) == 1, lines  # the driver's message and SQLAlchemy's link, joined
    assert 'database "strata_no_such_database" does not exist' in lines[0], lines
    assert "sqlalche.me" not in lines[0], lines


def test_schema_of_a_newer_strata_says_so(
    new_database_url: Callable[[], str], tmp_path: Path
) -> None:
    url = new_database_url()
    engine = create_database_engine(url)
    try:
        create_schema(engine)
        with engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        with pytest.raises(FailedPrecondition) as caught:
            create_schema(engine)
        assert "written by a newer Strata" in caught.value.message, caught.value
        assert "'0099'" in caught.value.message, caught.value
        assert caught.value.hint and "upgrade strata" in caught.value.hint
        status, lines = _serve(url, tmp_path)
        assert status == 2, (status, lines)
        assert len(lines) == 1, lines
        assert "written by a newer Strata" in lines[0] and "upgrade strata" in lines[0], lines
        with engine.connect() as connection:  # left as it was
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == (
                "0099"
            )
    finally:
        engine.dispose()
