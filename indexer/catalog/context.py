"""Everything a request needs, built once at start-up from Settings and passed around."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from indexer.catalog.spec_cache import SpecCache
from indexer.core.errors import FailedPrecondition, StrataError
from indexer.core.metrics import DECODE_FAILURES, timed_stage
from indexer.core.settings import Settings
from indexer.engine.loader import BackboneCache, LoadedBackbone, resolve_device
from indexer.engine.options import RuntimeOptions
from indexer.imaging.device_decode import decode_device
from indexer.imaging.framing import Preprocessing
from indexer.imaging.prepare import PreparedImage, one_thread_per_decode, prepare_many
from indexer.store.database import (
    collection_ids_never_reused,
    create_database_engine,
    create_schema,
    make_session_factory,
)
from indexer.store.index_manager import IndexManager
from indexer.store.index_policy import IndexPolicy

log = logging.getLogger(__name__)


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    backbones: BackboneCache
    indexes: IndexManager
    #: Decode/preprocess pool: Pillow releases the GIL while decoding and resizing.
    decode_pool: ThreadPoolExecutor
    #: This process's name in the change log: its own changes it applies as it makes them.
    origin: str = ""
    #: Collection specs by name for searches (see spec_cache.py: who uses one checks it).
    specs: SpecCache[Any] = field(default_factory=SpecCache)

    @classmethod
    def open(cls, settings: Settings) -> Context:
        check_data_folder(settings.data_dir)
        engine = create_database_engine(
            settings.resolved_database_url, settings.sqlite_busy_timeout_s
        )
        create_schema(engine)
        origin = new_origin()
        sessions = make_session_factory(engine, origin)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            backbones=BackboneCache(
                resolve_device(settings.device),
                settings.weights_files,
                RuntimeOptions(settings.engine, settings.precision, settings.model_cache_dir),
            ),
            indexes=IndexManager(
                settings.data_dir / "indexes",
                sessions,
                IndexPolicy.from_settings(settings),
                device=settings.device,
            ),
            decode_pool=ThreadPoolExecutor(
                max_workers=max(2, os.cpu_count() or 2),
                thread_name_prefix="decode",
                initializer=one_thread_per_decode,
            ),
            origin=origin,
            specs=SpecCache(enabled=collection_ids_never_reused(engine)),
        )

    def prepare_images(
        self,
        named_bytes: Sequence[tuple[str, bytes]],
        backbone: LoadedBackbone,
        pre: Preprocessing,
        for_ingest: bool = False,
    ) -> list[PreparedImage | StrataError]:
        """Decode and frame images for `backbone`: JPEGs on its device where the settings say
        so, everything else in the decode pool; `for_ingest` adds each one's content hash and
        thumbnail."""
        with timed_stage("decode"):
            outcomes = prepare_many(
                named_bytes,
                pre,
                self.settings.max_pixels,
                self.decode_pool,
                decode_device(self.settings.device_decode, backbone.device),
                for_ingest=for_ingest,
            )
        for outcome in outcomes:
            if isinstance(outcome, StrataError):
                DECODE_FAILURES.labels(type(outcome).__name__).inc()
        return outcomes

    def close(self) -> None:
        """Save changed indexes, stop the pool, release database connections."""
        saved = self.indexes.save_dirty()
        log.info("saved %d index file(s) on close", saved)
        self.decode_pool.shutdown(wait=True)
        self.engine.dispose()


def new_origin() -> str:
    """A name no other process, nor this one restarted, has: host, pid and a random part."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def check_data_folder(folder: Path) -> None:
    """Refuse to start on a data folder that cannot be written: every write would fail
    later, one request at a time, where an operator cannot see why."""
    if folder.exists() and not folder.is_dir():
        raise FailedPrecondition(
            f"the data folder {folder} is not a folder",
            hint="give the server a folder (--data / STRATA_DATA_DIR); it is created if missing",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-check-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise FailedPrecondition(
            f"the data folder {folder} is not writable: {exc.strerror or exc}",
            hint="give the server a folder it can write (--data / STRATA_DATA_DIR), or fix "
            "its permissions or mount options",
        ) from exc
