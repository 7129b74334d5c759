"""Finding and loading pretrained weights from local disk only (nothing is downloaded)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from indexer.backbones.spec import BackboneSpec
from indexer.core.errors import WeightsMissing

log = logging.getLogger(__name__)

#: Environment variable naming an extra folder searched for weight files.
WEIGHTS_DIR_ENV = "STRATA_WEIGHTS_DIR"


def torch_hub_checkpoints() -> Path:
    """torchvision's download cache: $TORCH_HOME/hub/checkpoints (default ~/.cache/torch)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(torch_home) / "hub" / "checkpoints"


def search_dirs() -> list[Path]:
    dirs = []
    if extra := os.environ.get(WEIGHTS_DIR_ENV):
        dirs.append(Path(extra))
    dirs.append(torch_hub_checkpoints())
    return dirs


def files_named(filename: str) -> Callable[[], list[Path]]:
    """Candidates for a weights file looked up by name in STRATA_WEIGHTS_DIR and TORCH_HOME."""
    return lambda: [d / filename for d in search_dirs()]


def resolve_weights_file(spec: BackboneSpec, explicit: Path | None = None) -> Path:
    """The weights file to load for `spec`, or WeightsMissing saying what to put where."""
    if explicit is not None:
        if explicit.is_file():
            return explicit
        raise WeightsMissing(
            f"weights file {str(explicit)!r} for backbone {spec.name!r} does not exist",
            hint=f"point at a copy of {spec.weights.filename}",
        )
    candidates = spec.weights.candidates()
    for path in candidates:
        if path.is_file():
            return path
    looked = ", ".join(str(p) for p in candidates) or "(nowhere: the package is not installed)"
    raise WeightsMissing(
        f"pretrained weights for backbone {spec.name!r} are not on this machine "
        f"(looked for {spec.weights.filename} at: {looked}); random weights are never served",
        hint=spec.weights.install_hint,
    )


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint safely (tensors only, no pickled code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or foreign file: say which one
        raise WeightsMissing(
            f"weights file {str(path)!r} could not be read: {exc}",
            hint="replace it with an intact copy of the checkpoint",
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsMissing(
            f"weights file {str(path)!r} does not hold a state dict",
            hint="save the checkpoint with torch.save(model.state_dict(), path)",
        )
    return state


def load_strict(model: nn.Module, path: Path) -> None:
    """Load a checkpoint whose keys match the architecture's exactly."""
    state = load_state_dict_file(path)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsMissing(
            f"weights file {str(path)!r} does not fit the architecture: {str(exc)[:300]}",
            hint="use the checkpoint published for exactly this architecture",
        ) from exc
