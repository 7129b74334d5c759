"""Eager PyTorch engine: the tap graph on the configured device; fp16 autocast on CUDA
(bf16 by setting), fp32 on CPU; stops the forward pass after the last tap."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from indexer.engine.graph import TapGraph


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for a precision setting; None runs in fp32."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else None
    return {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


class TorchEngine:
    name = "torch"

    def __init__(self, graph: TapGraph, device: torch.device, precision: str):
        self.graph = graph
        self.device = device
        self.dtype = autocast_dtype(device, precision)
        precision_name = "fp32" if self.dtype is None else str(self.dtype).removeprefix("torch.")
        self.description = f"torch on {device}, {precision_name}"

    def run(self, pixels: torch.Tensor) -> list[np.ndarray]:
        autocast = (
            torch.autocast(self.device.type, dtype=self.dtype)
            if self.dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            batch = pixels.to(self.device, non_blocking=True)
            outputs = self.graph(batch)
        return [o.float().cpu().numpy() for o in outputs]
