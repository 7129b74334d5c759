"""One typed settings object, read at start-up from flags and STRATA_* environment variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.core import vocabulary as names
from indexer.core.errors import InvalidInput


class SettingsError(InvalidInput):
    """A setting has a value that cannot work; raised at start-up, before serving."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("strata-data")
    #: SQLAlchemy URL; empty means a SQLite file inside data_dir.
    database_url: str = ""
    listen: str = "127.0.0.1:50051"
    #: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    #: Images per forward pass.
    batch_size: int = 32
    #: What runs the forward pass: "auto" (OpenVINO on a CPU when installed, else PyTorch),
    #: "torch" or "openvino" (CPU only).
    engine: str = "auto"
    #: "auto" (fp16 autocast on CUDA, fp32 on CPU), "fp32", "fp16" or "bf16".
    precision: str = "auto"
    #: Batches of one AddImages stream in flight at once, so the next one is decoded while
    #: the current one runs its forward pass and is written; 0: 2 when the model runs on a
    #: GPU, 1 on a CPU, where the engine already keeps every core busy (on the 2-core
    #: development machine 1 and 2 measured the same, 82-83 images/s in bench/ingest.py).
    ingest_pipeline_depth: int = 0
    #: JPEG decode and resize on the model's device (nvJPEG): "auto" (when it is a GPU),
    #: "on" (wherever the model runs, CPU included) or "off".
    device_decode: str = "auto"
    #: Converted model graphs (OpenVINO); empty: $XDG_CACHE_HOME/strata or ~/.cache/strata.
    model_cache_dir: Path | None = None
    max_pixels: int = names.MAX_PIXELS
    #: Upper bounds on what one request may ask for.
    max_k: int = names.MAX_K
    max_images_per_request: int = names.MAX_IMAGES_PER_REQUEST
    max_message_bytes: int = 64 * 1024 * 1024
    max_concurrent_requests: int = 64
    #: Seconds between background saves of FAISS files (SQL is always written first).
    index_save_interval_s: float = 30.0
    #: FAISS index tuning (indexer.core.vocabulary says what each one does).
    index_flat_max_vectors: int = names.INDEX_FLAT_MAX_VECTORS
    index_retrain_growth: float = names.INDEX_RETRAIN_GROWTH
    index_target_recall: float = names.INDEX_TARGET_RECALL
    #: Dynamic batching of concurrent single-image searches: at most this many per forward
    #: pass, and the longest the oldest one waits for company.
    search_batch_max: int = 32
    search_batch_wait_s: float = 0.002
    #: Explicit weights files, backbone name -> path (else torchvision cache / packages).
    weights_files: Mapping[str, Path] = field(default_factory=dict)
    #: TLS: PEM certificate chain and private key of the server; with a client CA, clients
    #: must present a certificate it signed (mutual TLS).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    #: Bearer tokens (env: comma-separated). When any is set, every call but health checks
    #: needs one; read tokens cannot write. Empty: no token checks (local use).
    read_tokens: tuple[str, ...] = ()
    write_tokens: tuple[str, ...] = ()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'strata.db').resolve()}"

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then STRATA_<FIELD> environment variables, then explicit overrides
        (flags); None overrides are ignored so argparse defaults can pass straight through."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"STRATA_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        positive = (
            "batch_size",
            "max_pixels",
            "max_k",
            "max_images_per_request",
            "max_message_bytes",
            "max_concurrent_requests",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"setting {name} must be positive, got {getattr(self, name)}")
        if self.ingest_pipeline_depth < 0:
            raise SettingsError("setting ingest_pipeline_depth must be 0 (auto) or more")
        if self.index_save_interval_s <= 0:
            raise SettingsError("setting index_save_interval_s must be positive")
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise SettingsError(
                f"listen address {self.listen!r} is not HOST:PORT", hint="e.g. 127.0.0.1:50051"
            )
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise SettingsError(f"device {self.device!r} is not auto, cpu, cuda or cuda:N")
        if self.engine not in names.ENGINES:
            raise SettingsError(f"engine {self.engine!r} is not one of {', '.join(names.ENGINES)}")
        if self.device_decode not in names.DEVICE_DECODE_MODES:
            raise SettingsError(
                f"device_decode {self.device_decode!r} is not one of "
                f"{', '.join(names.DEVICE_DECODE_MODES)}"
            )
        if self.precision not in names.PRECISIONS:
            raise SettingsError(
                f"precision {self.precision!r} is not one of {', '.join(names.PRECISIONS)}"
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


def _parse(name: str, annotation: object, raw: str) -> Any:
    kind = str(annotation)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind in ("Path", "Path | None"):
            return Path(raw)
        if kind.startswith("tuple[str"):
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if kind.startswith("Mapping[str, Path]"):
            pairs = (item.split("=", 1) for item in raw.split(",") if item)
            return {k.strip(): Path(v.strip()) for k, v in pairs}
    except ValueError as exc:
        raise SettingsError(f"STRATA_{name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw
