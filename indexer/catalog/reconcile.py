"""Start-up reconciliation: every FAISS index brought level with SQL before serving."""

from __future__ import annotations

import logging

from indexer.catalog import collections
from indexer.catalog.context import Context

log = logging.getLogger(__name__)


def reconcile_indexes(ctx: Context) -> int:
    """Open every (collection, depth) index: verified against its manifest, brought level with
    SQL, rebuilt when missing or corrupt; changed ones are saved. Returns how many opened."""
    swept = ctx.indexes.sweep_temporary_files()
    if swept:
        log.info("removed %d temporary file(s) of index saves interrupted earlier", swept)
    opened = 0
    for info in collections.list_collections(ctx):
        for depth in info.depths:
            ctx.indexes.get(info.id, depth.name, depth.dim)
            opened += 1
    saved = ctx.indexes.save_dirty()
    log.info(
        "opened %d index(es) at start-up: %d rebuilt from SQL, %d saved after reconciling",
        opened,
        ctx.indexes.rebuilds,
        saved,
    )
    return opened
