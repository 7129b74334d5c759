"""Adding images to a collection: decode, one forward pass per batch, SQL commit, then FAISS.

An image is acknowledged only after its item and vector rows are committed. Re-adding the
same uri with the same content stores nothing again; new content at a known uri replaces the
item (a new id, same labels and metadata). Labels and metadata sent with a known uri are added
to the item's either way (repository.annotate_items).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from indexer.backbones.wordnet import check_imagenet_head, hierarchy, is_tag_key
from indexer.catalog.collections import CollectionInfo, get_collection
from indexer.catalog.context import Context
from indexer.core.errors import Aborted, InvalidInput, NotFound, StrataError, quote
from indexer.core.metrics import timed_stage
from indexer.core.validation import check_labels, check_metadata, check_uri
from indexer.core.vocabulary import HUMAN, check_request_size
from indexer.engine.extract import embed_prepared
from indexer.imaging.prepare import PreparedImage
from indexer.imaging.thumbnail import Thumbnail
from indexer.store import repository
from indexer.store.thumbnail_repository import put_thumbnails

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageInput:
    uri: str
    data: bytes
    labels: Sequence[str] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: Also store the ImageNet top-1 class's WordNet tags as metadata (indexer.backbones.wordnet).
    tags: bool = False


@dataclass(frozen=True)
class AddResult:
    uri: str
    status: str  # "added" | "replaced" | "unchanged" | "failed"
    item_id: int | None = None
    error: StrataError | None = None


def add_images(ctx: Context, collection_name: str, inputs: Sequence[ImageInput]) -> list[AddResult]:
    """Add a batch; one result per input, in order. Bad images fail alone."""
    check_request_size(
        len(inputs),
        ctx.settings.max_images_per_request,
        "images",
        hint="send them in smaller batches (the streaming AddImages RPC does this for you)",
    )
    collection = get_collection(ctx, collection_name)
    ctx.indexes.check_space()  # disk full: refuse new images until index files can be saved
    results: list[AddResult | None] = [None] * len(inputs)
    for position, item in enumerate(inputs):
        try:  # the same checks as SetLabels, so whatever is stored can be exported and re-imported
            check_uri(item.uri)
            check_labels(item.labels, quote(item.uri))
            check_metadata(item.metadata, quote(item.uri))
        except InvalidInput as exc:
            results[position] = AddResult(item.uri, "failed", error=exc)
    backbone = ctx.backbones.get(collection.backbone)
    todo = [i for i, r in enumerate(results) if r is None]
    prepared = ctx.prepare_images(
        [(inputs[i].uri, inputs[i].data) for i in todo],
        backbone,
        backbone.spec.preprocessing.framed(collection.framing),
        for_ingest=True,
    )
    good: list[tuple[int, PreparedImage]] = []
    for position, outcome in zip(todo, prepared, strict=True):
        if isinstance(outcome, StrataError):
            results[position] = AddResult(inputs[position].uri, "failed", error=outcome)
        else:
            good.append((position, outcome))
    for round_ in _rounds(good):
        for attempt in range(3):
            try:
                _store(ctx, collection, inputs, round_, results)
                break
            except Aborted as exc:  # a foreign key: the collection deleted meanwhile?
                _refuse_if_deleted(ctx, collection_name, exc)
                raise
            except IntegrityError as exc:
                # The collection deleted meanwhile (a foreign key) is not a same-uri race.
                _refuse_if_deleted(ctx, collection_name, exc)
                # A concurrent writer added the same uri first; look again and retry.
                if attempt == 2:
                    raise Aborted(
                        f"collection {quote(collection_name)}: concurrent writers kept adding "
                        "the same uris; nothing of this batch was stored",
                        hint="retry the call",
                    ) from exc
                log.info("concurrent insert of the same uri; retrying batch")
    return [r for r in results if r is not None]


def _rounds(good: list[tuple[int, PreparedImage]]) -> list[list[tuple[int, PreparedImage]]]:
    """Split a batch so that no round holds a uri twice; the rounds are stored in order.

    The same uri twice in one batch then ends as it would in two calls: the later content
    replaces the earlier (or is unchanged when equal), whatever the batching."""
    rounds: list[list[tuple[int, PreparedImage]]] = []
    seen: dict[str, int] = {}
    for position, image in good:
        n = seen.get(image.name, 0)
        seen[image.name] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append((position, image))
    return rounds


def _refuse_if_deleted(ctx: Context, collection_name: str, exc: Exception) -> None:
    try:
        get_collection(ctx, collection_name)
    except NotFound:
        raise NotFound(
            f"collection {quote(collection_name)} was deleted while images were being added; "
            "this batch was not stored",
            hint="create the collection again and re-send the images",
        ) from exc


def _store(
    ctx: Context,
    collection: CollectionInfo,
    inputs: Sequence[ImageInput],
    good: list[tuple[int, PreparedImage]],
    results: list[AddResult | None],
) -> None:
    # Open the indexes before committing: an index first opened after our commit would
    # already hold our rows from SQL, and adding them again would duplicate ids.
    indexes = {d.name: ctx.indexes.get(collection.id, d.name, d.dim) for d in collection.depths}
    names = [image.name for _, image in good]
    with ctx.sessions() as session:
        known = {
            uri: (item.content_hash, item.id)
            for uri, item in repository.find_items_by_uri(session, collection.id, names).items()
        }
    to_embed: list[tuple[int, PreparedImage]] = []
    # Unchanged items sent with labels or metadata to add: item id -> (labels, metadata).
    annotations: dict[int, tuple[Sequence[str], Mapping[str, str]]] = {}
    for position, image in good:  # one uri at most once here (see _rounds)
        content_hash, item_id = known.get(image.name, (None, 0))
        if content_hash == image.content_hash:
            results[position] = AddResult(image.name, "unchanged")
            if inputs[position].labels or inputs[position].metadata:
                annotations[item_id] = (inputs[position].labels, inputs[position].metadata)
            continue
        to_embed.append((position, image))
    if annotations:  # only labels and metadata to write for these
        with ctx.sessions.begin() as session:
            repository.annotate_items(session, annotations)
    if not to_embed:
        _fill_unchanged_ids(ctx, collection, results)
        return
    # The forward pass runs outside any transaction, so writers never hold the lock long.
    backbone = ctx.backbones.get(collection.backbone)
    tagging = any(inputs[position].tags for position, _ in to_embed)
    if tagging:
        check_imagenet_head(backbone.spec.categories, backbone.spec.name)
    features = embed_prepared(
        backbone,
        [image for _, image in to_embed],
        [d.layer for d in collection.depths],
        collection.pooling,
        ctx.settings.batch_size,
        with_logits=tagging,  # the same pass runs on to the head
    )
    top1 = features.logits.argmax(axis=1) if features.logits is not None else None
    entries = [
        ItemToWrite(
            image.name,
            _content_hash(image),
            image.width,
            image.height,
            inputs[position].labels,
            inputs[position].metadata,
            hierarchy().tags(int(top1[row])) if inputs[position].tags and top1 is not None else {},
            thumbnail=image.thumbnail,
        )
        for row, (position, image) in enumerate(to_embed)
    ]
    with ctx.indexes.writing(collection.id):
        try:
            with timed_stage("write"), ctx.sessions.begin() as session:
                written = write_items(session, collection, entries, features.vectors)
            # Committed: now the derived FAISS indexes, then acknowledge.
            ids = np.array([item_id for _, item_id in written.stored], dtype=np.int64)
            rows = [row for row, _ in written.stored]
            with timed_stage("index_add"):
                for depth in collection.depths:
                    index = indexes[depth.name]
                    if written.replaced_ids:
                        index.remove(np.array(written.replaced_ids, dtype=np.int64))
                    index.add(ids, features.vectors[depth.layer][rows])
        except IntegrityError:
            raise  # refused by a constraint before anything committed
        except BaseException:
            ctx.indexes.commit_unknown(collection.id)
            raise
    for row, (position, _) in enumerate(to_embed):
        status, item_id = written.outcomes[row]
        results[position] = AddResult(inputs[position].uri, status, item_id)
    _fill_unchanged_ids(ctx, collection, results)


def _fill_unchanged_ids(
    ctx: Context, collection: CollectionInfo, results: list[AddResult | None]
) -> None:
    """Unchanged images report the id of the item that already holds them."""
    missing = [
        r.uri for r in results if r is not None and r.status == "unchanged" and r.item_id is None
    ]
    if not missing:
        return
    with ctx.sessions() as session:
        found = repository.find_items_by_uri(session, collection.id, missing)
        ids = {uri: item.id for uri, item in found.items()}
    for position, result in enumerate(results):
        if result is not None and result.status == "unchanged" and result.item_id is None:
            results[position] = AddResult(result.uri, "unchanged", ids.get(result.uri))


@dataclass(frozen=True)
class ItemToWrite:
    """One embedded image to store: its item row; its vectors are a row of write_items'."""

    uri: str
    content_hash: str
    width: int
    height: int
    labels: Sequence[str] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    #: WordNet tags of this content (empty unless asked for).
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Its thumbnail (indexer.imaging.thumbnail), stored with the item when given.
    thumbnail: Thumbnail | None = None


@dataclass(frozen=True)
class Written:
    #: Per entry, in order: ("added" | "replaced" | "unchanged", item id).
    outcomes: list[tuple[str, int]]
    #: Items whose content was replaced (their FAISS vectors are to be removed).
    replaced_ids: list[int]
    #: (entry index, new item id) of each item inserted, in order.
    stored: list[tuple[int, int]]


def write_items(
    session: Session,
    collection: CollectionInfo,
    entries: Sequence[ItemToWrite],
    vectors: Mapping[str, np.ndarray],
) -> Written:
    """Store embedded images in the caller's transaction: an idempotent upsert by uri and
    content hash. `vectors` holds, per layer, row i for entries[i]; a uri at most once.

    The one write step of every ingest path (the server's AddImages, indexer.distributed):
    the same content at a known uri is unchanged, new content replaces the item. A caller
    retries on IntegrityError (a concurrent writer inserted the same uri first)."""
    outcomes: list[tuple[str, int] | None] = [None] * len(entries)
    replaced_ids: list[int] = []
    replaced_rows: set[int] = set()
    inserted: list[int] = []  # entry index of each new item
    new_items: list[repository.NewItem] = []
    existing = repository.find_items_by_uri(session, collection.id, [e.uri for e in entries])
    for row, entry in enumerate(entries):
        old = existing.get(entry.uri)
        if old is not None and old.content_hash == entry.content_hash:
            outcomes[row] = ("unchanged", old.id)  # stored before, or by a concurrent writer
            if entry.labels or entry.metadata:
                repository.annotate_items(session, {old.id: (entry.labels, entry.metadata)})
            continue
        labels = [(label, HUMAN, 1.0) for label in dict.fromkeys(entry.labels)]
        metadata = dict(entry.metadata) | dict(entry.tags)
        if old is not None:
            # New content gets a new item id (its labels and metadata carried over): an
            # id never changes its vector, so a FAISS file saved before this commit can
            # only hold stale ids, which reconciling by id removes after a crash.
            # What was sent with it is added after the insert (annotate_items, below).
            labels = [(x.label, x.source, x.confidence) for x in old.labels]
            metadata = {m.key: m.value for m in old.meta}
            if entry.tags:  # new content, new tags: drop the old content's
                metadata = {k: v for k, v in metadata.items() if not is_tag_key(k)} | dict(
                    entry.tags
                )
            replaced_ids.append(old.id)
            replaced_rows.add(row)
            repository.delete_items(session, collection.id, [old.id])
            session.expunge(old)
        new_items.append(
            repository.NewItem(
                entry.uri, entry.content_hash, entry.width, entry.height, labels, metadata
            )
        )
        inserted.append(row)
    # Every item in one statement that returns the ids; then the vectors of these new ids
    # go in with one executemany.
    new_ids = repository.insert_items(session, collection.id, new_items)
    stored = list(zip(inserted, new_ids, strict=True))
    repository.insert_vectors(
        session,
        [
            (item_id, d.name, vectors[d.layer][row])
            for row, item_id in stored
            for d in collection.depths
        ],
    )
    put_thumbnails(session, [(item_id, entries[row].thumbnail) for row, item_id in stored])
    repository.annotate_items(
        session,
        {
            item_id: (entries[row].labels, entries[row].metadata)
            for row, item_id in stored
            if row in replaced_rows and (entries[row].labels or entries[row].metadata)
        },
    )
    for row, item_id in stored:
        outcomes[row] = ("replaced" if row in replaced_rows else "added", item_id)
    return Written([o for o in outcomes if o is not None], replaced_ids, stored)


def _content_hash(image: PreparedImage) -> str:
    """The hash `prepare_images(for_ingest=True)` computed in the decode pool."""
    if image.content_hash is None:
        raise RuntimeError(f"{image.name!r} was prepared without for_ingest: no content hash")
    return image.content_hash
