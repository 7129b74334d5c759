"""The library's typed settings, read at start-up from flags and STRATA_* environment
variables (the server's own settings extend them in service/settings.py)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from indexer.core import vocabulary as names
from indexer.core.errors import InvalidInput


class SettingsError(InvalidInput):
    """A setting has a value that cannot work; raised at start-up, before serving."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("strata-data")
    #: SQLAlchemy URL; empty means a SQLite file inside data_dir.
    database_url: str = ""
    #: "auto" (CUDA when present), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    #: Images per forward pass.
    batch_size: int = 32
    #: What runs the forward pass: "auto" (OpenVINO on a CPU when installed, else PyTorch),
    #: "torch" or "openvino" (CPU only).
    engine: str = "auto"
    #: "auto" (fp16 autocast on CUDA; bf16 after the first layers on a CPU with native bf16,
    #: fp32 on others), "fp32", "fp16" or "bf16".
    precision: str = "auto"
    #: JPEG decode and resize on the model's device (nvJPEG): "auto" (when it is a GPU),
    #: "on" (wherever the model runs, CPU included) or "off".
    device_decode: str = "auto"
    #: Converted model graphs (OpenVINO); empty: $XDG_CACHE_HOME/strata or ~/.cache/strata.
    model_cache_dir: Path | None = None
    max_pixels: int = names.MAX_PIXELS
    #: How long a SQLite write waits for another process's lock before UNAVAILABLE.
    sqlite_busy_timeout_s: float = 30.0
    #: Upper bounds on what one request may ask for.
    max_k: int = names.MAX_K
    max_images_per_request: int = names.MAX_IMAGES_PER_REQUEST
    #: FAISS index tuning (indexer.core.vocabulary says what each one does).
    index_flat_max_vectors: int = names.INDEX_FLAT_MAX_VECTORS
    index_retrain_growth: float = names.INDEX_RETRAIN_GROWTH
    index_target_recall: float = names.INDEX_TARGET_RECALL
    #: Explicit weights files, backbone name -> path (else torchvision cache / packages).
    weights_files: Mapping[str, Path] = field(default_factory=dict)
    #: Replicas over one database (docs/REPLICAS.md): seconds between applying the change
    #: log's new rows to the live indexes, and how long rows are kept in the log.
    replica_poll_s: float = 0.5
    replica_log_retention_s: float = 7 * 24 * 3600.0
    #: A folder every replica mounts (e.g. a ReadWriteMany volume): when set, index
    #: rebuilds run only on the replica holding the builder lock, the others adopt its files.
    shared_index_dir: Path | None = None

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'strata.db').resolve()}"

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """Defaults, then STRATA_<FIELD> environment variables, then explicit overrides
        (flags); None overrides are ignored so argparse defaults can pass straight through."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"STRATA_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # cls: a subclass loads its own fields the same way
        settings.validate()
        return settings

    def validate(self) -> None:
        positive = (
            "batch_size",
            "max_pixels",
            "max_k",
            "max_images_per_request",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"setting {name} must be positive, got {getattr(self, name)}")
        for name in ("replica_poll_s", "replica_log_retention_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"setting {name} must be positive, got {getattr(self, name)}")
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


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _boolean(raw: str) -> bool:
    word = raw.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ValueError(f"use one of {', '.join(sorted(_TRUE | _FALSE))}")
    return word in _TRUE


def _parse(name: str, annotation: object, raw: str) -> Any:
    kind = str(annotation)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            return _boolean(raw)
        if kind in ("Path", "Path | None"):
            return Path(raw)
        if kind.startswith("tuple[str"):
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if kind.startswith("Mapping[str, Path]"):
            pairs = (item.split("=", 1) for item in raw.split(",") if item)
            return {k.strip(): Path(v.strip()) for k, v in pairs}
    except ValueError as exc:
        raise SettingsError(
            f"STRATA_{name.upper()}={raw!r} is not a valid {kind}"
            + (f": {exc}" if kind == "bool" else "")  # the words it takes
        ) from exc
    return raw
