"""Repository functions for labels and stored probes. Each takes the caller's session; none
commits. Human labels are never replaced by predicted ones here: that rule lives in SQL
queries, so no caller can get it wrong."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ColumnElement, delete, select
from sqlalchemy.orm import Session

from indexer.core.errors import NotFound, quote
from indexer.core.vocabulary import HUMAN, PREDICTED
from indexer.store.models import Item, Label, Probe
from indexer.store.repository import of_collection

_CHUNK = 500


@dataclass(frozen=True)
class LabelRow:
    item_id: int
    uri: str
    label: str
    source: str
    confidence: float


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield [int(i) for i in ids[start : start + _CHUNK]]


# -- reading --------------------------------------------------------------------------------


def label_rows(session: Session, collection_id: int, source: str | None = None) -> list[LabelRow]:
    """Every label of the collection, by item id then label."""
    query = (
        select(Label.item_id, Item.uri, Label.label, Label.source, Label.confidence)
        .join(Item, Item.id == Label.item_id)
        .where(Item.collection_id == collection_id)
        .order_by(Label.item_id, Label.label)
    )
    if source is not None:
        query = query.where(Label.source == source)
    return [LabelRow(*row) for row in session.execute(query)]


def human_labels(session: Session, collection_id: int) -> dict[int, list[str]]:
    """Item id -> its human labels (sorted), for items that have any."""
    out: dict[int, list[str]] = {}
    for row in label_rows(session, collection_id, HUMAN):
        out.setdefault(row.item_id, []).append(row.label)
    return out


def item_ids(session: Session, collection_id: int) -> np.ndarray:
    query = select(Item.id).where(Item.collection_id == collection_id).order_by(Item.id)
    return np.fromiter(session.scalars(query), dtype=np.int64)


def item_uris(session: Session, collection_id: int, ids: Sequence[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for chunk in _chunks(ids):
        query = select(Item.id, Item.uri).where(of_collection(collection_id), Item.id.in_(chunk))
        found.update({item_id: uri for item_id, uri in session.execute(query)})
    return found


def ids_by_uri(session: Session, collection_id: int, uris: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(uris), _CHUNK):
        chunk = list(uris[start : start + _CHUNK])
        query = select(Item.uri, Item.id).where(
            Item.collection_id == collection_id, Item.uri.in_(chunk)
        )
        found.update({uri: item_id for uri, item_id in session.execute(query)})
    return found


# -- writing --------------------------------------------------------------------------------


def set_human_labels(session: Session, labels: Mapping[int, Sequence[str]]) -> int:
    """Each item's labels become exactly the given human labels (its predictions go too);
    returns the number of label rows written."""
    ids = list(labels)
    for chunk in _chunks(ids):
        session.execute(delete(Label).where(Label.item_id.in_(chunk)))
    rows = [
        Label(item_id=item_id, label=label, source=HUMAN, confidence=1.0)
        for item_id, names in labels.items()
        for label in dict.fromkeys(names)
    ]
    session.add_all(rows)
    return len(rows)


def set_predicted_labels(session: Session, predictions: Mapping[int, tuple[str, float]]) -> int:
    """Replace the predicted label of each item that has no human label; items with a human
    label are left alone. Returns how many items got a prediction."""
    ids = list(predictions)
    humans: set[int] = set()
    for chunk in _chunks(ids):
        humans.update(
            session.scalars(
                select(Label.item_id).where(Label.item_id.in_(chunk), Label.source == HUMAN)
            )
        )
        session.execute(delete(Label).where(Label.item_id.in_(chunk), Label.source == PREDICTED))
    rows = [
        Label(item_id=item_id, label=label, source=PREDICTED, confidence=float(confidence))
        for item_id, (label, confidence) in predictions.items()
        if item_id not in humans
    ]
    session.add_all(rows)
    return len(rows)


def clear_labels(
    session: Session, collection_id: int, ids: Sequence[int] | None, source: str | None
) -> int:
    """Delete labels of the given items (None: every item), of one source or both."""
    in_collection = select(Item.id).where(Item.collection_id == collection_id)
    condition: list[ColumnElement[bool]] = [Label.item_id.in_(in_collection)]
    if source is not None:
        condition.append(Label.source == source)
    if ids is None:
        return int(session.execute(delete(Label).where(*condition)).rowcount or 0)  # type: ignore[attr-defined]
    cleared = 0
    for chunk in _chunks(ids):
        result = session.execute(delete(Label).where(*condition, Label.item_id.in_(chunk)))
        cleared += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return cleared


# -- probes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredProbe:
    depth: str
    classes: list[str]
    weight: np.ndarray  # (dim, classes)
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    metrics: dict[str, object]


def save_probe(session: Session, collection_id: int, probe: StoredProbe) -> None:
    """Store a probe, replacing the one trained before on the same depth."""
    session.execute(
        delete(Probe).where(Probe.collection_id == collection_id, Probe.depth == probe.depth)
    )
    session.add(
        Probe(
            collection_id=collection_id,
            depth=probe.depth,
            classes=json.dumps(probe.classes),
            weight=np.asarray(probe.weight, np.float32).tobytes(),
            bias=np.asarray(probe.bias, np.float32).tobytes(),
            mean=np.asarray(probe.mean, np.float32).tobytes(),
            scale=np.asarray(probe.scale, np.float32).tobytes(),
            metrics=json.dumps(probe.metrics),
        )
    )


def load_probes(session: Session, collection_id: int) -> list[StoredProbe]:
    rows = session.scalars(select(Probe).where(Probe.collection_id == collection_id))
    out = []
    for row in rows:
        classes = json.loads(row.classes)
        mean = np.frombuffer(row.mean, dtype=np.float32)
        out.append(
            StoredProbe(
                depth=row.depth,
                classes=classes,
                weight=np.frombuffer(row.weight, dtype=np.float32).reshape(len(mean), -1),
                bias=np.frombuffer(row.bias, dtype=np.float32),
                mean=mean,
                scale=np.frombuffer(row.scale, dtype=np.float32),
                metrics=json.loads(row.metrics),
            )
        )
    return out


def best_probe(
    session: Session, collection_id: int, collection_name: str, depth: str = ""
) -> StoredProbe:
    """The probe stored at depth `depth` (a depth name); without one, the most accurate."""
    probes = load_probes(session, collection_id)
    if depth:
        probes = [p for p in probes if p.depth == depth]
    if not probes:
        where = f" at depth {quote(depth)}" if depth else ""
        raise NotFound(
            f"collection {quote(collection_name)} has no trained probe{where}",
            hint=f"train one first: strata probe --collection {collection_name}",
        )
    return max(probes, key=lambda p: float(p.metrics.get("accuracy", 0.0)))  # type: ignore[arg-type]
