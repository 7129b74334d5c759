"""Process-level helpers around FAISS objects: thread counts, ids of an index, thread
priority and memory release for rebuilds."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import faiss
import numpy as np

from indexer.store.index_policy import FLAT

log = logging.getLogger(__name__)

#: Niceness of background rebuild threads: training yields the CPU to searches.
REBUILD_NICENESS = 10


def lower_thread_priority(niceness: int = REBUILD_NICENESS) -> None:
    """Nice the calling thread (Linux schedules threads as tasks; elsewhere a no-op)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)
    except (AttributeError, OSError) as exc:
        log.debug("cannot lower the rebuild thread's priority: %s", exc)


@functools.cache
def malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc


def release_freed_memory() -> None:
    """Hand freed heap pages back to the OS: glibc keeps them for reuse otherwise, and a
    swapped-out index is the size of the live one."""
    trim = malloc_trim()
    if trim is not None:
        trim(0)


@contextlib.contextmanager
def faiss_threads(count: int) -> Iterator[None]:
    """FAISS's OpenMP thread count for the calling thread only (OpenMP keeps it per
    thread); 0 leaves it alone."""
    if count <= 0:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def index_ids(index: Any, kind: str) -> np.ndarray:
    if kind == FLAT:
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    return ivf_ids(index)


def ivf_ids(ivf: Any) -> np.ndarray:
    invlists = ivf.invlists
    parts = [np.zeros(0, np.int64)]
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size:
            pointer = invlists.get_ids(list_no)
            parts.append(faiss.rev_swig_ptr(pointer, size).astype(np.int64))  # a copy
            invlists.release_ids(list_no, pointer)
    return np.concatenate(parts)
