"""The tap graph: the one definition of the computation every engine runs (normalise, one
forward pass, tap the layers, pool, L2-normalise, logits when asked)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from indexer.core.vocabulary import check_pooling
from indexer.engine.pooling import pool

#: Bump when TapGraph's computation changes, so cached OpenVINO graphs are rebuilt.
GRAPH_VERSION = 2


class _StopForward(Exception):
    """Raised from a hook once every tap is captured, to skip the rest of the network."""


class TapGraph(nn.Module):
    """uint8 NHWC pixels -> (unit vector per tapped layer, ..., [logits]) in one pass."""

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str],
        pooling: str,
        with_logits: bool,
        mean: Sequence[float],
        std: Sequence[float],
    ):
        super().__init__()
        self.model = model
        self.layers = tuple(dict.fromkeys(layers))
        self.pooling = check_pooling(pooling)
        self.with_logits = with_logits
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255.0)
        modules = dict(model.named_modules())
        self._taps = [modules[name] for name in self.layers]

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # NHWC memory seen as NCHW: a channels-last tensor, the layout the weights use.
        x = pixels.permute(0, 3, 1, 2).float()
        x = (x - self.mean) / self.std
        captured: dict[int, torch.Tensor] = {}
        # A traced graph cannot raise; OpenVINO drops the unused tail of the network itself.
        stop_early = not self.with_logits and not torch.jit.is_tracing()

        def hook_for(slot: int) -> Callable[[nn.Module, object, torch.Tensor], None]:
            def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
                if slot not in captured:
                    # fp32 before pooling: GeM's cube overflows fp16 under autocast.
                    captured[slot] = pool(output.float(), self.pooling)
                if stop_early and len(captured) == len(self._taps):
                    raise _StopForward

            return hook

        handles = [m.register_forward_hook(hook_for(i)) for i, m in enumerate(self._taps)]
        logits = None
        try:
            with contextlib.suppress(_StopForward):
                out = self.model(x)
                # torchvision's Inception returns a namedtuple when aux logits are on.
                logits = out.logits if hasattr(out, "logits") else out
        finally:
            for handle in handles:
                handle.remove()
        outputs = [F.normalize(captured[i], dim=1) for i in range(len(self._taps))]
        if self.with_logits:
            assert logits is not None  # the forward pass ran to the end
            outputs.append(logits.float())
        return tuple(outputs)
