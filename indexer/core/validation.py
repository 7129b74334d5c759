"""Checks of caller-given strings and numbers shared by every entry point, so that AddImages,
SetLabels and CSV import accept exactly the same labels and metadata (what one stores, the
other can read back), and PostgreSQL never meets a value it refuses (a NUL in text)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from indexer.core.errors import InvalidInput, quote

MAX_LABEL_LENGTH = 200
MAX_LABELS_PER_ITEM = 100
MAX_METADATA_KEYS = 256
MAX_METADATA_KEY_LENGTH = 200
MAX_METADATA_VALUE_LENGTH = 4096
#: Metadata keys one search filter may require (each is a SQL condition).
MAX_FILTER_KEYS = 64
#: Labels one search filter may accept.
MAX_FILTER_LABELS = 1000
#: The largest item id SQL can hold (a signed 64-bit integer).
MAX_ID = 2**63 - 1
#: Bytes of UTF-8 in an item's uri. Uris are unique per collection through a B-tree index,
#: whose entries PostgreSQL caps at about 2,700 bytes (a longer uri failed its whole batch
#: with INTERNAL there, while SQLite took it): one limit on both, so collections move.
MAX_URI_BYTES = 2048


def check_text(value: str, what: str, limit: int) -> str:
    """Refuse NUL characters (PostgreSQL cannot store them) and text over `limit`."""
    if "\x00" in value:
        raise InvalidInput(
            f"{what} {quote(value)} contains a NUL character", hint="remove control characters"
        )
    if len(value) > limit:
        raise InvalidInput(
            f"{what} {quote(value)} is longer than the limit of {limit:,} characters",
            hint=f"shorten it to {limit:,} characters or fewer",
        )
    return value


def check_uri(uri: str) -> str:
    """An image's uri: not empty, no NUL, at most MAX_URI_BYTES of UTF-8."""
    if not uri:
        raise InvalidInput("an image has an empty uri", hint="give every image a name or path")
    size = len(uri.encode("utf-8", "surrogatepass"))
    if size > MAX_URI_BYTES:
        raise InvalidInput(
            f"uri {quote(uri)} is {size:,} bytes of UTF-8, over the limit of {MAX_URI_BYTES:,}",
            hint="use a shorter name or path; keep long text in metadata",
        )
    return check_text(uri, "uri", MAX_URI_BYTES)  # the NUL rule (its length is within)


def check_label(label: str, where: str) -> str:
    """A label's stripped text; empty, NUL or over MAX_LABEL_LENGTH is refused."""
    label = label.strip()
    if not label:
        raise InvalidInput(f"{where}: the label is empty", hint="give every item a label name")
    return check_text(label, f"{where}: label", MAX_LABEL_LENGTH)


def check_labels(labels: Sequence[str], where: str) -> list[str]:
    if len(labels) > MAX_LABELS_PER_ITEM:
        raise InvalidInput(
            f"{where}: {len(labels)} labels exceed the limit of {MAX_LABELS_PER_ITEM} per item",
            hint="give fewer labels",
        )
    return list(dict.fromkeys(check_label(label, where) for label in labels))


def check_metadata(metadata: Mapping[str, str], where: str) -> dict[str, str]:
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidInput(
            f"{where}: {len(metadata)} metadata keys exceed the limit of {MAX_METADATA_KEYS}",
            hint="store fewer keys",
        )
    for key, value in metadata.items():
        if not key.strip():
            raise InvalidInput(f"{where}: a metadata key is empty", hint="name every key")
        check_text(key, f"{where}: metadata key", MAX_METADATA_KEY_LENGTH)
        check_text(value, f"{where}: metadata value of {quote(key, 40)}", MAX_METADATA_VALUE_LENGTH)
    return dict(metadata)


def check_filter(labels_any: Sequence[str], metadata: Mapping[str, str]) -> None:
    """A search filter small enough for one SQL statement on SQLite and PostgreSQL."""
    if len(metadata) > MAX_FILTER_KEYS:
        raise InvalidInput(
            f"filter.metadata: {len(metadata)} keys exceed the limit of {MAX_FILTER_KEYS}",
            hint="filter on fewer metadata keys",
        )
    if len(labels_any) > MAX_FILTER_LABELS:
        raise InvalidInput(
            f"filter.labels_any: {len(labels_any)} labels exceed the limit of {MAX_FILTER_LABELS}",
            hint="filter on fewer labels",
        )
    for key, value in metadata.items():
        check_text(key, "filter.metadata key", MAX_METADATA_KEY_LENGTH)
        check_text(value, "filter.metadata value", MAX_METADATA_VALUE_LENGTH)
    for label in labels_any:
        check_text(label, "filter.labels_any label", MAX_LABEL_LENGTH)


def check_seed(seed: int) -> int:
    if not 0 <= seed < 2**63:
        raise InvalidInput(f"seed {seed} is out of range", hint="use a seed from 0 to 2**63-1")
    return seed


def check_confidence(value: float, where: str) -> float:
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidInput(
            f"{where}: confidence {value!r} is not between 0 and 1",
            hint="give a probability from 0 to 1",
        )
    return value


def check_id(text: str, where: str) -> int:
    """An item id written as ASCII digits, within SQL's 64-bit range."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()):
        raise InvalidInput(f"{where}: id {quote(text, 40)} is not a number", hint="or use --by uri")
    value = int(text)
    if value > MAX_ID:
        raise InvalidInput(
            f"{where}: id {quote(text, 40)} exceeds the largest id {MAX_ID}",
            hint="ids come from `strata index` output",
        )
    return value
