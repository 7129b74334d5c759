"""Process-wide Prometheus metrics of the library's own work (prometheus-client's default
registry). The service adds per-RPC metrics and serves them all (service/metrics.py).

Images per second is `rate(strata_images_embedded_total[1m])`."""

from __future__ import annotations

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
