"""The server's settings: the library's (indexer.core.settings) plus what only the service
uses (listen address, transport limits, TLS, tokens, batching of requests), read the same
way from flags and STRATA_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from indexer.core.settings import Settings, SettingsError


@dataclass(frozen=True)
class ServiceSettings(Settings):
    listen: str = "127.0.0.1:50051"
    #: Batches of one AddImages stream in flight at once, so the next one is decoded while
    #: the current one runs its forward pass and is written; 0: 2 when the model runs on a
    #: GPU, 1 on a CPU, where the engine already keeps every core busy (on the 2-core
    #: development machine 1 and 2 measured the same, 82-83 images/s in bench/ingest.py).
    ingest_pipeline_depth: int = 0
    max_message_bytes: int = 64 * 1024 * 1024
    max_concurrent_requests: int = 64
    #: Of those, at most this many request streams (AddImages) from one client connection
    #: (0: a quarter of the limit), so one client's streams cannot lock out the rest
    #: (service/limits.py).
    max_requests_per_client: int = 0
    #: A client stream that sends no message for this long is ended (DEADLINE_EXCEEDED).
    idle_stream_timeout_s: float = 60.0
    #: Seconds between background saves of FAISS files (SQL is always written first).
    index_save_interval_s: float = 30.0
    #: Dynamic batching of concurrent single-image searches: at most this many per forward
    #: pass, and the longest the oldest one waits for company when no batch runs. 0: a lone
    #: search starts at once; under load, batches form from the searches that queue while
    #: the running ones finish (bench/serve.py: waiting 2 ms cost a lone search 2 ms and
    #: bought no throughput).
    search_batch_max: int = 32
    search_batch_wait_s: float = 0.0
    #: Search batches in flight at once: with 2, one decodes while the other runs forward.
    search_batch_concurrency: int = 2
    #: Build and run each collection's engine (the default depths' when there is none)
    #: before health says SERVING, so the first request does not pay for it.
    warm_up: bool = True
    #: TLS: PEM certificate chain and private key of the server; with a client CA, clients
    #: must present a certificate it signed (mutual TLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    #: Bearer tokens (env: comma-separated). When any is set, every call but health checks
    #: needs one; read tokens cannot write. Empty: no token checks (local use).
    read_tokens: tuple[str, ...] = ()
    write_tokens: tuple[str, ...] = ()
    #: Health says NOT_SERVING while this replica's oldest unapplied change (written by
    #: another replica or by Ray ingest) is older than this many seconds.
    replica_max_lag_s: float = 10.0
    #: Prometheus metrics on HOST:PORT (empty: none); log lines as "text" or "json".
    metrics_listen: str = ""
    log_format: str = "text"

    def validate(self) -> None:
        super().validate()
        for name in ("search_batch_max", "search_batch_concurrency"):
            if getattr(self, name) < 1:
                raise SettingsError(f"setting {name} must be >= 1, got {getattr(self, name)}")
        if self.replica_max_lag_s <= 0:
            raise SettingsError("setting replica_max_lag_s must be positive")
        if self.metrics_listen:
            example = "e.g. 0.0.0.0:9464; leave it empty for no metrics"
            _check_address(self.metrics_listen, "metrics address", example)
        if self.log_format not in ("text", "json"):
            raise SettingsError(
                f"log_format {self.log_format!r} is not text or json", hint="--log-format json"
            )
        for name in ("max_message_bytes", "max_concurrent_requests"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"setting {name} must be positive, got {getattr(self, name)}")
        if self.ingest_pipeline_depth < 0:
            raise SettingsError("setting ingest_pipeline_depth must be 0 (auto) or more")
        if self.index_save_interval_s <= 0:
            raise SettingsError("setting index_save_interval_s must be positive")
        _check_address(self.listen, "listen address", "e.g. 127.0.0.1:50051")
        if self.max_requests_per_client < 0 or self.idle_stream_timeout_s <= 0:
            raise SettingsError(
                "max_requests_per_client must be 0 (auto) or more and idle_stream_timeout_s "
                "positive"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise SettingsError(
                "TLS needs both a certificate and its private key",
                hint="set --tls-cert and --tls-key (STRATA_TLS_CERT, STRATA_TLS_KEY) together",
            )
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise SettingsError(
                "mutual TLS (tls_client_ca) needs the server's own certificate",
                hint="set --tls-cert and --tls-key as well",
            )
        for name in ("tls_cert", "tls_key", "tls_client_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise SettingsError(f"setting {name}: {path} is not a readable file")
        if any(not t or t != t.strip() for t in (*self.read_tokens, *self.write_tokens)):
            raise SettingsError("tokens must be non-empty and have no surrounding spaces")


def _check_address(address: str, what: str, example: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise SettingsError(f"{what} {address!r} is not HOST:PORT", hint=example)
    if int(port) > 65535:
        raise SettingsError(
            f"{what} {address!r}: port {port} is out of range",
            hint="use a port from 1 to 65535 (0 picks a free one)",
        )
