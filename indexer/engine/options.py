"""How forward passes run (engine, precision, cache), and what every engine offers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from indexer.core.errors import FailedPrecondition, quote
from indexer.core.vocabulary import ENGINES, PRECISIONS


class EngineSettingError(FailedPrecondition):
    """An engine or precision setting that cannot work on this machine (a server-side
    configuration problem, not the caller's)."""


@dataclass(frozen=True)
class RuntimeOptions:
    """How forward passes run. RuntimeOptions() alone is plain eager PyTorch (no build
    step); a Context passes its Settings, whose engine "auto" is OpenVINO on a CPU when it
    is installed."""

    engine: str = "torch"
    #: "auto": fp16 autocast on CUDA; on a CPU with native bf16 (OpenVINO), fp32 through the
    #: backbone's `fp32_through` layer and bf16 after; fp32 on other CPUs.
    precision: str = "auto"
    #: Where converted OpenVINO graphs are kept; None: $XDG_CACHE_HOME/strata or ~/.cache/strata.
    cache_dir: Path | None = None

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise EngineSettingError(
                f"unknown engine {quote(self.engine)}", hint=f"choose one of: {', '.join(ENGINES)}"
            )
        if self.precision not in PRECISIONS:
            raise EngineSettingError(
                f"unknown precision {quote(self.precision)}",
                hint=f"choose one of: {', '.join(PRECISIONS)}",
            )

    @property
    def resolved_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "strata"


class Engine(Protocol):
    name: str
    #: What runs, in words: engine, device, precision (logged once per engine).
    description: str

    def run(self, pixels: torch.Tensor) -> list[np.ndarray]:
        """(N,H,W,3) uint8 -> one float32 (N,C) array per output of the TapGraph."""
        ...
