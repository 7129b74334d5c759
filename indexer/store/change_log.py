"""The change log: item adds and deletes and collection drops, numbered in commit order.

Repository functions that add or delete items call `serialise_writers` before their first
write and `record` after it, in the caller's transaction, so a change and its log row commit
together or not at all. Replicas read the rows past the last `seq` they applied
(indexer.catalog.replication).

Why a lock: a sequence hands out numbers at insert time, but transactions commit in any
order, so a reader could see seq 7 committed while seq 6 is still in flight and skip 6 for
ever. On PostgreSQL every writing transaction therefore takes one transaction-level advisory
lock before its first item write and holds it to its commit: numbers are taken in commit
order, and once a row is visible every smaller number is committed or rolled back. SQLite
needs nothing: it already runs one write transaction at a time (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session

from indexer.store.models import Change

#: Key of the advisory lock that orders writers (distinct from the migration lock).
WRITE_ORDER_LOCK_KEY = 0x5354524C4F47  # "STRLOG"
#: Where a session factory keeps the writing process's name (sessionmaker(info=...)).
ORIGIN_INFO_KEY = "strata_origin"

ADD = "add"
DELETE = "delete"
DROP = "drop"


@dataclass(frozen=True)
class ChangeRow:
    seq: int
    collection_id: int
    item_id: int | None
    op: str
    origin: str
    written_at: float


def origin_of(session: Session) -> str:
    """The writing process's name, as its session factory was told (empty: unnamed)."""
    return str(session.info.get(ORIGIN_INFO_KEY, ""))


def serialise_writers(session: Session) -> None:
    """Take the write-order lock (PostgreSQL; held until commit, re-entrant). Call it before
    the transaction's first item write: taken after row locks it could deadlock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_ORDER_LOCK_KEY})


def record(session: Session, collection_id: int, op: str, item_ids: Sequence[int] = ()) -> None:
    """Log `op` for `item_ids` (a drop logs one row without an item) in this transaction."""
    serialise_writers(session)
    origin = origin_of(session)
    now = time.time()
    targets: Sequence[int | None] = list(item_ids) if op != DROP else [None]
    if not targets:
        return
    session.execute(
        insert(Change),
        [
            {
                "collection_id": collection_id,
                "item_id": item_id,
                "op": op,
                "origin": origin,
                "written_at": now,
            }
            for item_id in targets
        ],
    )


def head(session: Session) -> int:
    """The highest committed seq (0 on an empty log)."""
    return int(session.scalar(select(func.max(Change.seq))) or 0)


def read_after(session: Session, seq: int, limit: int) -> list[ChangeRow]:
    """Up to `limit` committed rows past `seq`, in order."""
    rows = session.execute(
        select(
            Change.seq,
            Change.collection_id,
            Change.item_id,
            Change.op,
            Change.origin,
            Change.written_at,
        )
        .where(Change.seq > seq)
        .order_by(Change.seq)
        .limit(limit)
    )
    return [ChangeRow(*row) for row in rows]


def oldest_pending(session: Session, seq: int, skip_origin: str) -> float | None:
    """Write time of the oldest row past `seq` that another process wrote (None: none)."""
    value = session.scalar(
        select(func.min(Change.written_at)).where(Change.seq > seq, Change.origin != skip_origin)
    )
    return None if value is None else float(value)


def prune(session: Session, older_than: float) -> int:
    """Delete rows written before `older_than` (unix time); returns how many."""
    result = session.execute(delete(Change).where(Change.written_at < older_than))
    return int(getattr(result, "rowcount", 0) or 0)
