"""Engine and session factory, built once; SQLite tuned for concurrent use; the schema is
created and upgraded by the Alembic migrations shipped in indexer/store/migrations."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from indexer.core.errors import (
    Aborted,
    FailedPrecondition,
    InvalidInput,
    ResourceExhausted,
    Unavailable,
)
from indexer.store.change_log import ORIGIN_INFO_KEY
from indexer.store.models import Base

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Key of the PostgreSQL advisory lock that serialises concurrent start-ups' migrations.
MIGRATION_LOCK_KEY = 0x5354524154  # "STRAT"


def create_database_engine(
    url: str, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000
) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and enforced foreign keys."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": busy_timeout_s, "check_same_thread": False}
        )
        busy_ms = int(busy_timeout_s * 1000)
        event.listen(
            engine, "connect", lambda dbapi, record: _sqlite_pragmas(dbapi, record, busy_ms)
        )
        # Begin write transactions up front (BEGIN IMMEDIATE): concurrent writers then wait
        # on the busy timeout instead of failing with "database is locked" on upgrade.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    elif url.startswith("postgresql"):
        engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    else:
        engine = create_engine(url)
    translate_errors(engine, busy_timeout_s)
    return engine


#: Words of driver errors that mean the database server is away (restarting, killed
#: connections, refused connects), not that the statement was wrong.
_AWAY = (
    "connection refused",
    "could not connect",
    "server closed the connection",
    "terminating connection",
    "connection is closed",
    "connection already closed",
    "the database system is",  # ... starting up / shutting down / in recovery mode
    "ssl connection has been closed",
    "consuming input failed",
    "no connection to the server",
    "admin_shutdown",
    "not currently accepting connections",
    "too many connections",
)


def translate_errors(engine: Engine, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
    """Turn driver errors that are not the caller's fault into domain errors with a hint:
    the database away -> Unavailable (retry), disk full -> ResourceExhausted, SQLite locked
    by another process -> Unavailable. Anything else is left as it is."""
    where = engine.url.render_as_string(hide_password=True)

    @event.listens_for(engine, "handle_error")
    def _translate(context: ExceptionContext) -> Exception | None:
        if context.is_pre_ping:  # the pool's own probe: it needs the driver's error
            return None
        text = str(context.original_exception).lower()
        if "cannot contain nul" in text:  # PostgreSQL text: SQLite takes them, PG cannot
            return InvalidInput(
                "a text value of the request (a name, uri, label or metadata) contains a NUL "
                "(0x00) character, which the database cannot store",
                hint="remove control characters from the names and values sent",
            )
        if "out of range for type" in text or "integer out of range" in text:
            return InvalidInput(
                f"a number of the request is out of the database's range ({_first_line(text)})",
                hint="ids and counts are 64-bit integers at most",
            )
        if "foreign key" in text and isinstance(context.sqlalchemy_exception, IntegrityError):
            # A row this call writes refers to one deleted meanwhile (a collection deleted
            # during AddImages, Probe or PredictLabels): a race, not a server fault.
            return Aborted(
                "a concurrent change removed what this call refers to (its collection or "
                "an item was deleted meanwhile); nothing of it was stored",
                hint="retry; if the collection is gone, create it again first",
            )
        if "database or disk is full" in text or "no space left" in text:
            return ResourceExhausted(
                f"the database at {where} is out of disk space; nothing of this call was stored",
                hint="free disk space in the data folder, then retry",
            )
        if "database is locked" in text:
            return Unavailable(
                f"the SQLite database at {where} stayed locked for {busy_timeout_s:g} s "
                "(another process holds a write lock)",
                hint="stop the other process using that file, then retry",
            )
        if context.is_disconnect or any(words in text for words in _AWAY):
            return Unavailable(
                f"the database at {where} is unreachable ({_first_line(text)})",
                hint="retry in a few seconds; the server reconnects by itself",
            )
        return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "no detail"


def database_reachable(engine: Engine) -> bool:
    """One `SELECT 1` on a pooled connection: False while the database is away."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def _sqlite_pragmas(
    dbapi_connection: Any, _record: Any, busy_ms: int = SQLITE_BUSY_TIMEOUT_MS
) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def create_schema(engine: Engine) -> None:
    """Bring the database to the newest schema (`alembic upgrade head`), in one transaction.

    A database made before migrations existed (tables but no alembic_version) gets any
    missing tables and is stamped at head, so it is never migrated twice."""
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Several servers starting at once on one database take turns.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            config = alembic_config(connection)
            tables = inspect(connection).get_table_names()
            if "collections" in tables and "alembic_version" not in tables:
                log.info("database predates migrations: creating missing tables, stamping head")
                Base.metadata.create_all(connection)
                command.stamp(config, "head")
            else:
                command.upgrade(config, "head")
    except Exception as exc:
        raise FailedPrecondition(
            f"cannot prepare the database at {engine.url.render_as_string(hide_password=True)}: "
            f"{exc}",
            hint="check --database / STRATA_DATABASE_URL and that the server is running",
        ) from exc


def collection_ids_never_reused(engine: Engine) -> bool:
    """Whether a deleted collection's id can never come back. PostgreSQL's sequences never
    hand one out twice, nor does SQLite with AUTOINCREMENT; a SQLite store made before
    migrations (whose tables create_schema leaves as they were) has plain rowids, which give
    a new row the largest id + 1: the id of a deleted newest collection."""
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect() as connection:
        sql = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'collections'"
        ).scalar()
    return "AUTOINCREMENT" in str(sql or "").upper()


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the shipped migrations, running on `connection`."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def make_session_factory(engine: Engine, origin: str = "") -> sessionmaker[Session]:
    """Sessions on `engine`; `origin` names the writing process in the change log."""
    return sessionmaker(engine, expire_on_commit=False, info={ORIGIN_INFO_KEY: origin})
