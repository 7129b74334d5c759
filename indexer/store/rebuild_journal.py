"""The journal of writes that land while an index is rebuilt off its lock, and their
replay onto the new index before it is swapped in."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

#: Vectors added to the new index per call during a replay.
REPLAY_CHUNK = 5_000


@dataclass(frozen=True)
class Write:
    ids: np.ndarray
    vectors: np.ndarray | None  # None: a removal


def journal_rows(writes: list[Write]) -> int:
    return sum(len(w.ids) for w in writes)


def replay(index: faiss.Index, writes: list[Write]) -> None:
    """Apply journaled writes: each id ends as its last write left it. Idempotent, so ids
    the new index already holds from the snapshot are not duplicated."""
    if not writes:
        return
    final: dict[int, np.ndarray | None] = {}
    for write in writes:
        for row, item_id in enumerate(write.ids.tolist()):
            final[item_id] = None if write.vectors is None else write.vectors[row]
    touched = np.fromiter(final, dtype=np.int64, count=len(final))
    index.remove_ids(faiss.IDSelectorBatch(touched))
    present = [(i, v) for i, v in final.items() if v is not None]
    for start in range(0, len(present), REPLAY_CHUNK):  # slices: no second full copy
        piece = present[start : start + REPLAY_CHUNK]
        index.add_with_ids(
            np.stack([v for _, v in piece]), np.array([i for i, _ in piece], dtype=np.int64)
        )
