"""Where FAISS searches run: on a GPU copy of each index when FAISS has GPU support and the
device setting allows CUDA, else on the CPU index itself (no copy)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import faiss

log = logging.getLogger(__name__)

#: Copies a CPU index to the search device; the copy answers `search` like the original.
DeviceCopier = Callable[[faiss.Index], faiss.Index]


def gpu_count() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def device_copier(device: str) -> DeviceCopier | None:
    """For the device setting ("auto", "cpu", "cuda", "cuda:N"): a function copying an
    index to that GPU, or None to search on the CPU."""
    if device == "cpu":
        return None
    gpus = gpu_count()
    if gpus == 0 or not hasattr(faiss, "StandardGpuResources"):
        if device != "auto":
            log.warning("device %s: this FAISS build has no GPU support; searching on CPU", device)
        return None
    number = int(device.partition(":")[2] or 0)
    if number >= gpus:
        log.warning("device %s: FAISS sees %d GPU(s); searching on CPU", device, gpus)
        return None
    resources = faiss.StandardGpuResources()  # one per process: scratch memory, streams

    def to_gpu(index: faiss.Index) -> faiss.Index:
        return faiss.index_cpu_to_gpu(resources, number, index)

    log.info("FAISS searches run on GPU %d", number)
    return to_gpu
