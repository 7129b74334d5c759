"""Browsing a collection without its original files: paged, filtered, sorted item listings,
thumbnails by id, and backfilling the thumbnails of items indexed before they existed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from indexer.catalog.collections import get_collection
from indexer.catalog.context import Context
from indexer.catalog.items import ItemInfo, item_info
from indexer.core.errors import InvalidInput, NotFound, StrataError, quote
from indexer.core.vocabulary import (
    DEFAULT_PAGE_SIZE,
    ITEM_ORDERS,
    LABEL_SOURCE_FILTERS,
    MAX_PAGE_SIZE,
    MAX_THUMBNAILS_PER_REQUEST,
    check_request_size,
)
from indexer.imaging.decode import content_hash
from indexer.imaging.thumbnail import Thumbnail, thumbnail_from_bytes
from indexer.store import browse_repository, repository, thumbnail_repository

# -- listing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemListing:
    items: list[ItemInfo]
    next_page_token: str  # empty on the last page
    total: int  # items matching the filters


def list_items(
    ctx: Context,
    collection_name: str,
    *,
    page_size: int = 0,
    page_token: str = "",
    order_by: str = "",
    labels_any: Sequence[str] = (),
    metadata: Mapping[str, str] | None = None,
    label_source: str = "",
    without_thumbnail: bool = False,
) -> ItemListing:
    """One page of a collection's items. A page token continues exactly the listing it came
    from (same order and filters); it survives items being added or deleted meanwhile."""
    order_by = order_by or "id"
    if order_by not in ITEM_ORDERS:
        raise InvalidInput(
            f"cannot order items by {quote(order_by)}",
            hint=f"use one of: {', '.join(ITEM_ORDERS)}",
        )
    if label_source and label_source not in LABEL_SOURCE_FILTERS:
        raise InvalidInput(
            f"label source {quote(label_source)} is not known",
            hint=f"use one of: {', '.join(LABEL_SOURCE_FILTERS)}, or nothing for every item",
        )
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        raise InvalidInput(
            f"page size {page_size} is out of range",
            hint=f"ask for 1 to {MAX_PAGE_SIZE} items a page (0 = {DEFAULT_PAGE_SIZE})",
        )
    metadata = dict(metadata or {})
    listing = _listing_digest(order_by, labels_any, metadata, label_source, without_thumbnail)
    after = _read_token(page_token, listing) if page_token else None
    collection = get_collection(ctx, collection_name)
    with ctx.sessions() as session:
        page = browse_repository.list_items(
            session,
            collection.id,
            order_by=order_by,
            labels_any=list(labels_any),
            metadata=metadata,
            label_source=label_source,
            without_thumbnail=without_thumbnail,
            after=after,
            limit=page_size or DEFAULT_PAGE_SIZE,
        )
        items = [item_info(item) for item in page.items]
    token = _make_token(listing, page.keys[-1]) if page.more and page.keys else ""
    return ItemListing(items, token, page.total)


def _listing_digest(
    order_by: str,
    labels_any: Sequence[str],
    metadata: Mapping[str, str],
    label_source: str,
    without_thumbnail: bool,
) -> str:
    what = json.dumps(
        [order_by, sorted(labels_any), sorted(metadata.items()), label_source, without_thumbnail]
    )
    return hashlib.sha256(what.encode()).hexdigest()[:16]


def _make_token(listing: str, after: browse_repository.After) -> str:
    key, item_id = after
    text = json.dumps({"l": listing, "k": key, "i": int(item_id)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _read_token(token: str, listing: str) -> browse_repository.After:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        fields = json.loads(text)
        key, item_id, made_for = fields["k"], int(fields["i"]), fields["l"]
    except (binascii.Error, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise InvalidInput(
            f"page token {quote(token)} is not one this server made",
            hint="pass next_page_token of the previous page unchanged, or empty for page one",
        ) from None
    if made_for != listing or not isinstance(key, int | float | str):
        raise InvalidInput(
            "the page token belongs to a listing with another order or other filters",
            hint="keep order_by, the filter and label_source of the first page, or start over",
        )
    return key, item_id


# -- thumbnails -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Thumbnails:
    found: dict[int, Thumbnail]
    missing: list[int]  # items that exist but have no thumbnail yet


def get_thumbnails(ctx: Context, collection_name: str, ids: Sequence[int]) -> Thumbnails:
    """The thumbnails of `ids`; ids that are not items of the collection are refused."""
    check_request_size(len(ids), MAX_THUMBNAILS_PER_REQUEST, "thumbnail ids")
    collection = get_collection(ctx, collection_name)
    with ctx.sessions() as session:
        found, existing = thumbnail_repository.get_thumbnails(session, collection.id, ids)
    unknown = [int(i) for i in dict.fromkeys(ids) if int(i) not in existing]
    if unknown:
        raise NotFound(
            f"item id(s) {', '.join(map(str, unknown[:20]))} do not exist in collection "
            f"{quote(collection_name)}",
            hint="ids come from ListItems or Search; the items may have been deleted",
        )
    missing = [int(i) for i in dict.fromkeys(ids) if int(i) not in found]
    return Thumbnails(found, missing)


@dataclass(frozen=True)
class BackfillResult:
    written: int
    #: (item id, why) of each image refused; the others were stored.
    failed: list[tuple[int, StrataError]]


def backfill_thumbnails(
    ctx: Context, collection_name: str, images: Sequence[tuple[int, bytes]]
) -> BackfillResult:
    """Make and store thumbnails from original images, matched to items by id. An image
    whose bytes do not hash to the item's stored content hash is refused (it is not the
    image that was indexed), as is one the safe decoder refuses; the rest are stored."""
    check_request_size(len(images), ctx.settings.max_images_per_request, "images")
    collection = get_collection(ctx, collection_name)
    with ctx.sessions() as session:
        items = {
            item_id: (item.uri, item.content_hash)
            for item_id, item in repository.get_items(
                session, collection.id, [i for i, _ in images]
            ).items()
        }
    failed: list[tuple[int, StrataError]] = []
    todo: list[tuple[int, str, bytes]] = []
    for item_id, data in images:
        known = items.get(item_id)
        if known is None:
            failed.append(
                (
                    item_id,
                    NotFound(
                        f"item {item_id} does not exist in collection {quote(collection_name)}",
                        hint="match files to ids with ListItems (uri) first",
                    ),
                )
            )
        elif content_hash(data) != known[1]:
            failed.append(
                (
                    item_id,
                    InvalidInput(
                        f"item {item_id} ({quote(known[0])}): the image sent is not the one "
                        "indexed (its SHA-256 differs from the stored content hash)",
                        hint="send the original file; re-index the uri if the file changed",
                    ),
                )
            )
        else:
            todo.append((item_id, known[0], data))

    def make(entry: tuple[int, str, bytes]) -> Thumbnail | StrataError:
        try:
            return thumbnail_from_bytes(entry[2], entry[1], ctx.settings.max_pixels)
        except StrataError as exc:
            return exc

    # Always in the pool, one alone too: its threads run PyTorch's resize on one OpenMP
    # thread (on the main thread a team's second thread would spin on after the work).
    made = list(ctx.decode_pool.map(make, todo))
    rows: list[tuple[int, Thumbnail | None]] = []
    for (item_id, _, _), outcome in zip(todo, made, strict=True):
        if isinstance(outcome, StrataError):
            failed.append((item_id, outcome))
        else:
            rows.append((item_id, outcome))
    written = 0
    if rows:
        with ctx.sessions.begin() as session:
            # Items deleted since the lookup are skipped (no row to hang a thumbnail on).
            still = repository.get_items(session, collection.id, [i for i, _ in rows])
            written = thumbnail_repository.put_thumbnails(
                session, [(i, t) for i, t in rows if i in still]
            )
    return BackfillResult(written, failed)
