"""One typed settings object, read at start-up from flags and STRATA_* environment variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.errors import InvalidInput


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
    max_pixels: int = 64_000_000
    #: Upper bounds on what one request may ask for.
    max_k: int = 1000
    max_images_per_request: int = 256
    max_message_bytes: int = 64 * 1024 * 1024
    max_concurrent_requests: int = 64
    #: Seconds between background saves of FAISS files (SQL is always written first).
    index_save_interval_s: float = 30.0
    #: Explicit weights files, backbone name -> path (else torchvision cache / packages).
    weights_files: Mapping[str, Path] = field(default_factory=dict)

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
        if self.index_save_interval_s <= 0:
            raise SettingsError("setting index_save_interval_s must be positive")
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise SettingsError(
                f"listen address {self.listen!r} is not HOST:PORT", hint="e.g. 127.0.0.1:50051"
            )
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise SettingsError(f"device {self.device!r} is not auto, cpu, cuda or cuda:N")


def _parse(name: str, annotation: object, raw: str) -> Any:
    kind = str(annotation)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind.startswith("Mapping[str, Path]"):
            pairs = (item.split("=", 1) for item in raw.split(",") if item)
            return {k.strip(): Path(v.strip()) for k, v in pairs}
    except ValueError as exc:
        raise SettingsError(f"STRATA_{name.upper()}={raw!r} is not a valid {kind}") from exc
    return raw
