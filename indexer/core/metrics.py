"""Process-wide Prometheus metrics of the library's own work (prometheus-client's default
registry). The service adds per-RPC metrics and serves them all (service/metrics.py).

Images per second is `rate(strata_images_embedded_total[1m])`; the mean wall time of one
call of a stage is `rate(strata_stage_seconds_sum[1m]) / rate(strata_stage_seconds_count[1m])`
by `stage`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Histogram

IMAGES_EMBEDDED = Counter(
    "strata_images_embedded",
    "Images run through a forward pass (ingest, image queries, start-up's warm-up query), "
    "by backbone",
    ["backbone"],
)
FORWARD_BATCH_IMAGES = Histogram(
    "strata_forward_batch_images",
    "Images per forward pass",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
DECODE_FAILURES = Counter(
    "strata_decode_failures",
    "Images refused before the forward pass (unreadable, too large, bad format), by error",
    ["error"],
)

#: The stages a request's time goes to, each timed once per call (a batch, or one search).
STAGES = ("decode", "forward", "index_search", "hit_details", "write", "index_add")
STAGE_SECONDS = Histogram(
    "strata_stage_seconds",
    "Wall seconds of one call of a stage of the library's work, by stage: decode (images "
    "decoded and framed, a batch or one query; for ingest with thumbnails and content "
    "hashes), forward (one forward pass), index_search (FAISS at every depth of a search), "
    "hit_details (the SQL lookup of a search's hits), write (an ingest batch's SQL "
    "transaction, commit included), index_add (its FAISS adds)",
    ["stage"],
    buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
# Bound once: a child's lookup by label takes a lock and a dict probe on every call.
_STAGE_CHILDREN = {name: STAGE_SECONDS.labels(name) for name in STAGES}


@contextmanager
def timed_stage(name: str) -> Iterator[None]:
    """Observe the wall time of the block as one call of stage `name` (one of STAGES)."""
    child = _STAGE_CHILDREN[name]
    began = time.perf_counter()
    try:
        yield
    finally:
        child.observe(time.perf_counter() - began)
