"""Reading and deleting stored items."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.catalog.collections import get_collection
from indexer.catalog.context import Context
from indexer.core.errors import NotFound, missing_items
from indexer.store import change_log, repository
from indexer.store.models import Item


@dataclass(frozen=True)
class LabelInfo:
    label: str
    source: str
    confidence: float


@dataclass(frozen=True)
class ItemInfo:
    id: int
    uri: str
    content_hash: str
    width: int
    height: int
    labels: tuple[LabelInfo, ...]
    metadata: dict[str, str]


def item_info(item: Item) -> ItemInfo:
    return ItemInfo(
        id=item.id,
        uri=item.uri,
        content_hash=item.content_hash,
        width=item.width,
        height=item.height,
        labels=tuple(
            LabelInfo(label.label, label.source, label.confidence)
            for label in sorted(item.labels, key=lambda lb: lb.label)
        ),
        metadata={m.key: m.value for m in item.meta},
    )


def get_item(ctx: Context, collection_name: str, item_id: int) -> ItemInfo:
    collection = get_collection(ctx, collection_name)
    with ctx.sessions() as session:
        return item_info(repository.get_item(session, collection.id, item_id))


def delete_items(ctx: Context, collection_name: str, ids: Sequence[int]) -> list[int]:
    """Delete items by id; unknown ids are refused before anything is deleted."""
    collection = get_collection(ctx, collection_name)
    wanted = list(dict.fromkeys(int(i) for i in ids))
    with ctx.indexes.writing(collection.id):
        try:
            with ctx.sessions.begin() as session:
                # The write-order lock before the look-up: servers deleting the same items
                # at once take turns, and the later ones find them gone (NotFound) instead
                # of each answering that it deleted them.
                change_log.serialise_writers(session)
                found = repository.get_items(session, collection.id, wanted)
                missing = [i for i in wanted if i not in found]
                if missing:
                    raise missing_items(
                        missing,
                        collection_name,
                        hint="nothing was deleted; check the ids with `strata search` output",
                    )
                repository.delete_items(session, collection.id, wanted)
            # SQL first: search already skips ids SQL no longer has, FAISS catches up here.
            ctx.indexes.remove_items(collection.id, np.array(wanted, dtype=np.int64))
        except NotFound:
            raise  # unknown ids: refused before anything was deleted
        except BaseException:
            ctx.indexes.commit_unknown(collection.id)
            raise
    return wanted
