"""Engine and session factory, built once; SQLite tuned for concurrent use; the schema is
created and upgraded by the Alembic migrations shipped in indexer/store/migrations."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from indexer.core.errors import (
    Aborted,
    FailedPrecondition,
    InvalidInput,
    ResourceExhausted,
    StrataError,
    Unavailable,
)
from indexer.store.change_log import ORIGIN_INFO_KEY
from indexer.store.models import Base

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Key of the PostgreSQL advisory lock that serialises concurrent start-ups' migrations.
MIGRATION_LOCK_KEY = 0x5354524154  # "STRAT"
#: The database URLs Strata takes, as said by every error about one.
URL_HINT = "use postgresql+psycopg://USER@HOST:PORT/DB or sqlite:///PATH"
#: libpq settings of every PostgreSQL connection unless the URL sets them: give up a connect
#: to a host that accepts TCP but never answers after 10 s (instead of hanging for minutes),
#: and let TCP keepalives find a peer that vanished under an idle or waiting connection
#: (after about 30 + 3 x 10 s).
POSTGRES_CONNECT_ARGS: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
#: The hint of a database away while the server runs (its pool reconnects by itself).
RECONNECT_HINT = "retry in a few seconds; the server reconnects by itself"
#: The hint of a database away at start-up, where the process exits instead.
START_UP_UNREACHABLE_HINT = (
    "check the host and port in --database / STRATA_DATABASE_URL, and that PostgreSQL is "
    "running and accepting connections there (start it), then start strata again"
)


def check_database_url(url: str) -> URL:
    """`url` parsed, or InvalidInput naming what is wrong with it: not a URL, or not a
    PostgreSQL or SQLite one (`postgres://`, `mysql://`, a missing driver)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise InvalidInput(
            f"the database URL {_masked(url)} cannot be parsed ({_one_line(str(exc))}); "
            "it needs a scheme such as postgresql+psycopg:// or sqlite:///",
            hint=URL_HINT,
        ) from exc
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.drivername.split("+", 1)[0]
    if backend == "postgres":
        raise InvalidInput(
            f"the database URL {shown} has the scheme {parsed.drivername!r}, which is not "
            "known: PostgreSQL URLs start with postgresql+psycopg://",
            hint=URL_HINT,
        )
    if backend not in ("postgresql", "sqlite"):
        raise InvalidInput(
            f"the database URL {shown} names a {backend!r} database; Strata runs on "
            "PostgreSQL or SQLite only",
            hint=URL_HINT,
        )
    try:
        # A driver named after '+' that is not known, or whose module is not installed.
        parsed.get_dialect().import_dbapi()
    except (NoSuchModuleError, ImportError) as exc:
        raise InvalidInput(
            f"the database driver {parsed.drivername!r} of URL {shown} is not available "
            f"({_one_line(str(exc))})",
            hint=URL_HINT,
        ) from exc
    return parsed


def _masked(url: str) -> str:
    """`url` with anything that looks like a password (`:secret@`) hidden."""
    return repr(re.sub(r"(?<=:)[^:@/]*(?=@)", "***", url))


def create_database_engine(
    url: str, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000
) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout and enforced foreign keys,
    PostgreSQL a connect timeout and TCP keepalives (POSTGRES_CONNECT_ARGS). A URL that is
    neither raises InvalidInput."""
    parsed = check_database_url(url)
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
    else:
        connect_args = {k: v for k, v in POSTGRES_CONNECT_ARGS.items() if k not in parsed.query}
        engine = create_engine(
            url, pool_pre_ping=True, pool_size=10, max_overflow=20, connect_args=connect_args
        )
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
    "timeout expired",  # connect_timeout: the host took TCP but never answered
)
#: SQLSTATE of a write in a read-only transaction (a standby, or default_transaction_read_only
#: as after a failover): psycopg's ReadOnlySqlTransaction.
_READ_ONLY_SQLSTATE = "25006"


def translate_errors(engine: Engine, busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_MS / 1000) -> None:
    """Turn driver errors that are not the caller's fault into domain errors with a hint:
    the database away -> Unavailable (retry), disk full -> ResourceExhausted, SQLite locked
    by another process -> Unavailable, a read-only database (a standby) -> Unavailable.
    Anything else is left as it is."""
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
        if _sqlstate(context.original_exception) == _READ_ONLY_SQLSTATE or (
            "read-only transaction" in text
        ):
            # Connected to a standby (a failover), or the database was made read-only: the
            # session keeps its read-only default, so drop the pool's connections and let the
            # next call connect afresh (to the primary once the URL leads there again).
            context.is_disconnect = True
            return Unavailable(
                f"the database at {where} is read-only "
                f"({_first_line(str(context.original_exception))}); nothing of this "
                "call was stored",
                hint="check that the database URL points at the primary (writable) PostgreSQL "
                "server, not a standby; retry once it does",
            )
        if context.is_disconnect or any(words in text for words in _AWAY):
            return Unavailable(
                f"the database at {where} is unreachable ({_first_line(text)})",
                hint=RECONNECT_HINT,
            )
        return None


def _sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE of a driver error (psycopg 3: sqlstate, psycopg2: pgcode), if any."""
    code = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    return code if isinstance(code, str) else None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "no detail"


def _one_line(text: str) -> str:
    """A driver's message on one line, without SQLAlchemy's "Background on this error"."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith("(Background on this error")]
    return re.sub(r"\s+", " ", " ".join(kept))[:1000] or "no detail"


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
    missing tables and is stamped at head, so it is never migrated twice. A database at a
    revision this Strata does not know (migrated by a newer one) is refused, untouched.
    Every failure is a FailedPrecondition of one line with a start-up hint."""
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Several servers starting at once on one database take turns.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            config = alembic_config(connection)
            tables = inspect(connection).get_table_names()
            if "alembic_version" in tables:
                _refuse_newer_schema(connection, config, where)
            if "collections" in tables and "alembic_version" not in tables:
                log.info("database predates migrations: creating missing tables, stamping head")
                Base.metadata.create_all(connection)
                command.stamp(config, "head")
            else:
                command.upgrade(config, "head")
    except FailedPrecondition:
        raise
    except StrataError as exc:  # translated by translate_errors (away, read-only, ...)
        hint = START_UP_UNREACHABLE_HINT if exc.hint == RECONNECT_HINT else exc.hint
        raise FailedPrecondition(f"cannot prepare the database: {exc.message}", hint=hint) from exc
    except Exception as exc:
        detail = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        raise FailedPrecondition(
            f"cannot prepare the database at {where}: {_one_line(str(detail))}",
            hint="check --database / STRATA_DATABASE_URL and that the server is running",
        ) from exc


def _refuse_newer_schema(connection: Connection, config: Config, where: str) -> None:
    """FailedPrecondition when the database's schema revision is not one this Strata ships:
    a newer Strata migrated it, and this one can neither use nor upgrade it."""
    script = ScriptDirectory.from_config(config)
    known = {revision.revision for revision in script.walk_revisions()}
    current = MigrationContext.configure(connection).get_current_heads()
    unknown = [revision for revision in current if revision not in known]
    if unknown:
        raise FailedPrecondition(
            f"the database at {where} was written by a newer Strata: its schema revision "
            f"{', '.join(map(repr, unknown))} is unknown to this one, which knows revisions "
            f"up to {script.get_current_head()!r}",
            hint="upgrade strata on this host to the version that migrated the database "
            "(or use another database)",
        )


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
