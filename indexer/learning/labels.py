"""Labels on items: set and clear by id, import from and export to CSV.

A label has a source: `human` (set, imported, or from folder names at index time) or
`predicted` (written by `bootstrap.predict_labels`, with a confidence). Predictions never
replace a human label; setting a human label replaces the item's predicted ones.

CSV import takes `uri,label` or `id,label` rows (a header naming the columns is optional;
without one, a first column of integers means ids). Several rows for one item give it
several labels. A `source` and `confidence` column, as written by export, are honoured.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from indexer.catalog.collections import get_collection
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput, NotFound, missing_items, quote
from indexer.core.validation import check_confidence, check_id, check_label
from indexer.core.vocabulary import HUMAN, LABEL_SOURCES
from indexer.store import label_repository
from indexer.store.label_repository import LabelRow

EXPORT_COLUMNS = ("id", "uri", "label", "source", "confidence")


@dataclass(frozen=True)
class ImportResult:
    items: int  # items whose labels were written
    labels: int  # label rows written


def check_source(source: str) -> str | None:
    """'' means both sources."""
    if source and source not in LABEL_SOURCES:
        raise InvalidInput(f"unknown label source {quote(source)}", hint="use human or predicted")
    return source or None


def set_labels(ctx: Context, collection_name: str, labels: Mapping[int, Sequence[str]]) -> int:
    """Give each item exactly these human labels; returns label rows written. Unknown ids
    are refused before anything is written."""
    collection = get_collection(ctx, collection_name)
    clean = {
        int(item_id): [check_label(label, f"item {item_id}") for label in names]
        for item_id, names in labels.items()
    }
    if not clean:
        raise InvalidInput("no labels to set", hint="give at least one item id and label")
    with ctx.sessions.begin() as session:
        known = label_repository.item_uris(session, collection.id, list(clean))
        _refuse_missing([i for i in clean if i not in known], collection_name)
        return label_repository.set_human_labels(session, clean)


def clear_labels(
    ctx: Context, collection_name: str, ids: Sequence[int] | None, source: str = ""
) -> int:
    """Delete the labels of `ids` (None: of every item), of one source or both."""
    collection = get_collection(ctx, collection_name)
    wanted = None if ids is None else list(dict.fromkeys(int(i) for i in ids))
    with ctx.sessions.begin() as session:
        if wanted is not None:
            known = label_repository.item_uris(session, collection.id, wanted)
            _refuse_missing([i for i in wanted if i not in known], collection_name)
        return label_repository.clear_labels(session, collection.id, wanted, check_source(source))


def export_labels(ctx: Context, collection_name: str, source: str = "") -> list[LabelRow]:
    collection = get_collection(ctx, collection_name)
    with ctx.sessions() as session:
        return label_repository.label_rows(session, collection.id, check_source(source))


def to_csv(rows: Sequence[LabelRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow([row.item_id, row.uri, row.label, row.source, f"{row.confidence:.6g}"])
    return buffer.getvalue()


def import_csv(ctx: Context, collection_name: str, text: str, key: str = "") -> ImportResult:
    """Import labels from CSV text; `key` ("uri" or "id") overrides the detected key column.
    All or nothing: a bad row or an unknown uri/id refuses the whole file."""
    if key not in ("", "uri", "id"):
        raise InvalidInput(f"unknown key column {quote(key)}", hint="use uri or id")
    collection = get_collection(ctx, collection_name)
    records, key = _parse(text, key)
    with ctx.sessions.begin() as session:
        if key == "id":
            ids = {r.key: int(r.key) for r in records}
            known = label_repository.item_uris(session, collection.id, list(ids.values()))
            missing = [f"line {r.line}: id {r.key}" for r in records if ids[r.key] not in known]
        else:
            ids = label_repository.ids_by_uri(session, collection.id, [r.key for r in records])
            missing = [f"line {r.line}: uri {quote(r.key)}" for r in records if r.key not in ids]
        if missing:
            raise NotFound(
                f"{len(missing)} row(s) name items not in collection {quote(collection_name)}: "
                + "; ".join(missing[:10]),
                hint="nothing was imported; fix or remove those rows (uris must match the "
                "ones given at index time)",
            )
        human: dict[int, list[str]] = {}
        predicted: dict[int, tuple[str, float]] = {}
        for r in records:
            if r.source == HUMAN:
                human.setdefault(ids[r.key], []).append(r.label)
            else:
                predicted[ids[r.key]] = (r.label, r.confidence)
        written = label_repository.set_human_labels(session, human)
        # An item with a human label (stored, or in this file) keeps it: its predicted row is
        # not written, and so not counted.
        predicted_items = label_repository.set_predicted_labels(
            session, {i: p for i, p in predicted.items() if i not in human}
        )
    return ImportResult(items=len(human) + predicted_items, labels=written + predicted_items)


@dataclass(frozen=True)
class _Record:
    line: int
    key: str
    label: str
    source: str
    confidence: float


def _parse(text: str, key: str) -> tuple[list[_Record], str]:
    rows = _read_rows(text.removeprefix("\ufeff"))  # a BOM from a spreadsheet export
    if not rows:
        raise InvalidInput("the CSV file has no rows", hint="give uri,label or id,label rows")
    header = [cell.strip().lower() for cell in rows[0][1]]
    if "label" in header and ("uri" in header or "id" in header):
        key = key or ("uri" if "uri" in header else "id")
        if key not in header:
            raise InvalidInput(f"the CSV header has no {quote(key)} column", hint="check --by")
        columns = {name: header.index(name) for name in header}
        rows = rows[1:]  # none: the export of an unlabelled collection, imported back
    else:
        columns = {"label": 1}
        if not key:
            key = "id" if all(r[0].strip().isdecimal() for _, r in rows) else "uri"
        columns[key] = 0
    records = []
    for line, row in rows:
        where = f"CSV line {line}"
        if len(row) <= max(columns[key], columns["label"]):
            raise InvalidInput(f"{where}: expected {key},label", hint="one item and label a row")
        item = row[columns[key]].strip()
        if key == "id":
            item = str(_item_id(item, where))
        source = _cell(row, columns.get("source")) or HUMAN
        if source not in LABEL_SOURCES:
            raise InvalidInput(f"{where}: source {quote(source)}", hint="use human or predicted")
        confidence = _cell(row, columns.get("confidence")) or "1"
        try:
            value = float(confidence)
        except ValueError:
            raise InvalidInput(f"{where}: confidence {quote(confidence)} is not a number") from None
        check_confidence(value, where)
        label = check_label(row[columns["label"]], where)
        records.append(_Record(line, item, label, source, value))
    return records, key


def _read_rows(text: str) -> list[tuple[int, list[str]]]:
    """Non-empty rows with their line numbers; a field over the csv module's limit is refused
    by line (it would otherwise escape as csv.Error)."""
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if any(row):
                rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise InvalidInput(
            f"CSV line {reader.line_num}: {exc} (a field may hold at most "
            f"{csv.field_size_limit():,} characters)",
            hint="check the quoting of that line; labels and uris are short",
        ) from None
    return rows


def _item_id(text: str, where: str) -> int:
    """An id cell: a positive whole number (as `strata index` prints ids)."""
    if not (text.isascii() and text.isdigit()) or int(text) == 0:
        raise InvalidInput(
            f"{where}: {quote(text, 40)} is not a valid item id (ids are positive whole numbers)",
            hint="ids come from `strata index` or `strata items list` output; or use --by uri",
        )
    return check_id(text, where)  # and within SQL's 64-bit range


def _cell(row: list[str], column: int | None) -> str:
    return row[column].strip() if column is not None and column < len(row) else ""


def _refuse_missing(missing: list[int], collection_name: str) -> None:
    if missing:
        raise missing_items(
            missing,
            collection_name,
            hint="nothing was changed; ids come from `strata index` or `strata search` output",
        )
