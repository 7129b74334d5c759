"""`strata index --ray`: ingest a list of files on a Ray cluster, straight into the
collection's database.

Ray Data reads the files as bytes and decodes/frames them in CPU tasks, embeds them in an
actor pool (one backbone per actor; a GPU each where the cluster has GPUs), and hands the
vectors to this driver, which writes each batch in one transaction with the server's own
write step (indexer.catalog.ingest.write_items). The promises are the server's:

- an image counted as added is committed (counts move only after a commit);
- a rerun after any failure (a killed actor or driver, a retried task) leaves exactly one
  item per file: the write is an upsert by uri + content hash, and the rerun skips files
  whose content the database already holds before decoding them;
- a bad file fails alone, with the server's error (the same decode code raises it).

Servers on that database pick the items up from SQL (the replica sync; a restarted server
reconciles its FAISS indexes at start-up).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from indexer.backbones.registry import get_backbone
from indexer.backbones.wordnet import check_imagenet_head, hierarchy
from indexer.catalog.collections import CollectionInfo, info
from indexer.catalog.ingest import ItemToWrite, write_items
from indexer.core.errors import Aborted, FailedPrecondition, StrataError, quote
from indexer.core.settings import Settings
from indexer.core.validation import check_metadata
from indexer.distributed.stages import (
    FAILED,
    READY,
    UNCHANGED,
    Embedder,
    EmbedderConfig,
    error_of,
    read_and_prepare,
    vector_column,
)
from indexer.engine.options import RuntimeOptions
from indexer.store import repository
from indexer.store.database import create_database_engine, create_schema, make_session_factory
from indexer.store.models import Item

log = logging.getLogger(__name__)

#: The cluster address that starts an in-process Ray on this machine's cores.
LOCAL = "local"


@dataclass(frozen=True)
class FileToIndex:
    uri: str
    path: Path
    labels: Sequence[str] = ()


@dataclass(frozen=True)
class Failure:
    uri: str
    #: The library error, as the server would report it; None when the file was unreadable.
    error: StrataError | None
    message: str


@dataclass
class Progress:
    """Counts so far; every added/replaced one is committed."""

    total: int
    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.added + self.replaced + self.unchanged + len(self.failures)


@dataclass(frozen=True)
class RayIngestOptions:
    #: Embedding actors; 0: one per GPU where the cluster has GPUs, else one per 4 CPUs.
    actors: int = 0
    #: Images per decode task and per driver write transaction.
    decode_batch: int = 16
    write_batch: int = 64
    #: Also store the ImageNet top-1 WordNet tags as metadata.
    tags: bool = False
    #: Metadata every added item gets (as AddImages' per image).
    metadata: Mapping[str, str] = field(default_factory=dict)


def require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise FailedPrecondition(
            "distributed ingest needs Ray Data, which is not installed",
            hint="pip install 'strata[ray]'",
        ) from exc
    return ray


@contextmanager
def connected(address: str) -> Iterator[Any]:
    """Ray connected to `address` ("local": an in-process cluster on this machine's cores);
    a Ray this process already runs is used as it is and left running."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address == LOCAL:
        # A cluster of its own (address="local"), never one found running on this machine;
        # it shares this process's fate.
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
    else:
        ray.init(address=address, **quiet)
    try:
        yield ray
    finally:
        ray.shutdown()


def ingest(
    settings: Settings,
    collection_name: str,
    files: Sequence[FileToIndex],
    ray_address: str = LOCAL,
    options: RayIngestOptions | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Progress:
    """Add `files` to the collection in `settings`' database on a Ray cluster."""
    options = options or RayIngestOptions()
    engine = create_database_engine(settings.resolved_database_url)
    try:
        create_schema(engine)  # what a server does at start; a no-op on a current schema
        sessions = make_session_factory(engine)
        with sessions() as session:
            collection = info(repository.get_collection(session, collection_name))
        spec = get_backbone(collection.backbone)
        if options.tags:
            check_imagenet_head(spec.categories, spec.name)
        check_metadata(options.metadata, "metadata for every file")
        unique = list({f.uri: f for f in files}.values())
        known = _stored_hashes(sessions, collection.id, [f.uri for f in unique])
        progress = Progress(total=len(unique))
        with connected(ray_address) as ray:
            dataset = _pipeline(ray, settings, collection, unique, known, options)
            labels = {f.uri: f.labels for f in unique}
            layers = [d.layer for d in collection.depths]
            for batch in dataset.iter_batches(
                batch_size=options.write_batch, batch_format="numpy", prefetch_batches=1
            ):
                _write(sessions, collection, batch, labels, layers, options, progress)
                if on_progress is not None:
                    on_progress(progress)
        return progress
    finally:
        engine.dispose()


def _stored_hashes(
    sessions: sessionmaker[Session], collection_id: int, uris: Sequence[str]
) -> dict[str, str]:
    found: dict[str, str] = {}
    with sessions() as session:
        for start in range(0, len(uris), 1000):
            chunk = list(uris[start : start + 1000])
            query = select(Item.uri, Item.content_hash).where(
                Item.collection_id == collection_id, Item.uri.in_(chunk)
            )
            found.update({uri: digest for uri, digest in session.execute(query)})
    return found


def _pipeline(
    ray: Any,
    settings: Settings,
    collection: CollectionInfo,
    files: Sequence[FileToIndex],
    known: Mapping[str, str],
    options: RayIngestOptions,
) -> Any:
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the CLI draws one bar, counted in commits
    context.print_on_execution_start = False
    # No per-stage reservations: on a small cluster shared with other jobs the decode stage's
    # share came out under one CPU and it never started (Ray Data 2.60 warned "not enough to
    # run any task"); both stages draw on the free CPUs as they need them.
    context.op_resource_reservation_enabled = False
    spec = get_backbone(collection.backbone)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = options.actors or (gpus if gpus else max(1, cpus // 4))
    config = EmbedderConfig(
        backbone=collection.backbone,
        layers=tuple(d.layer for d in collection.depths),
        dims=tuple(d.dim for d in collection.depths),
        pooling=collection.pooling,
        batch_size=settings.batch_size,
        device=settings.device,
        runtime=RuntimeOptions(settings.engine, settings.precision, settings.model_cache_dir),
        weights_files=dict(settings.weights_files),
        top1=options.tags,
    )
    rows = [{"uri": f.uri, "path": str(f.path), "known_hash": known.get(f.uri, "")} for f in files]
    blocks = max(1, min(len(rows) // options.decode_batch + 1, 4 * cpus))
    return (
        ray.data.from_items(rows, override_num_blocks=blocks)
        .map_batches(
            read_and_prepare,
            fn_kwargs={
                "pre": spec.preprocessing.framed(collection.framing),
                "max_pixels": settings.max_pixels,
            },
            batch_size=options.decode_batch,
            batch_format="numpy",
            num_cpus=1,
            # A task pool of its own size keeps decoding in CPU tasks: Ray Data would fuse
            # it into the actors' stage otherwise (when the sizes are equal it still does).
            compute=ray.data.TaskPoolStrategy(size=max(1, cpus)),
        )
        .map_batches(
            Embedder,
            fn_constructor_kwargs={"config": config},
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=settings.batch_size,
            batch_format="numpy",
            # A GPU each where there are GPUs; the CPU engine (OpenVINO/torch) elsewhere.
            **({"num_gpus": 1} if gpus else {"num_cpus": 1}),
            # Ray Data restarts a killed actor and retries its batches (max_restarts=-1,
            # max_task_retries=-1 by default); the writes are idempotent either way.
        )
    )


def _write(
    sessions: sessionmaker[Session],
    collection: CollectionInfo,
    batch: dict[str, np.ndarray],
    labels: Mapping[str, Sequence[str]],
    layers: Sequence[str],
    options: RayIngestOptions,
    progress: Progress,
) -> None:
    """One transaction per batch; counts move only once it is committed."""
    entries: list[ItemToWrite] = []
    rows: list[int] = []
    seen: set[str] = set()
    unchanged = 0
    failures: list[Failure] = []
    for i, uri in enumerate(str(u) for u in batch["uri"]):
        status = str(batch["status"][i])
        if status == FAILED:
            error = error_of(
                str(batch["error_kind"][i]),
                str(batch["error_message"][i]),
                str(batch["error_hint"][i]),
            )
            failures.append(Failure(uri, error, str(batch["error_message"][i])))
        elif status == UNCHANGED or uri in seen:  # a row twice: a retried task's output
            unchanged += 1
        elif status == READY:
            seen.add(uri)
            top1 = int(batch["top1"][i])
            entries.append(
                ItemToWrite(
                    uri,
                    str(batch["content_hash"][i]),
                    int(batch["width"][i]),
                    int(batch["height"][i]),
                    labels.get(uri, ()),
                    options.metadata,
                    hierarchy().tags(top1) if options.tags and top1 >= 0 else {},
                )
            )
            rows.append(i)
    vectors = {layer: batch[vector_column(layer)][rows] for layer in layers}
    for attempt in range(3):
        try:
            with sessions.begin() as session:
                written = write_items(session, collection, entries, vectors)
            break
        except IntegrityError as exc:
            # A server (or another ingest) inserted one of these uris first: look again.
            if attempt == 2:
                raise Aborted(
                    f"collection {quote(collection.name)}: concurrent writers kept adding the "
                    "same uris; this batch was not stored",
                    hint="run the same command again: what is stored stays, the rest is added",
                ) from exc
            log.info("concurrent insert of the same uri; retrying batch")
    for status, _ in written.outcomes:
        if status == "added":
            progress.added += 1
        elif status == "replaced":
            progress.replaced += 1
        else:
            progress.unchanged += 1
    progress.unchanged += unchanged
    progress.failures.extend(failures)
