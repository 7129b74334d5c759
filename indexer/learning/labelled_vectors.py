"""A depth's stored vectors with each item's human label, read from SQL (the source of
truth, on any backend) for probes, propagation and suggestions."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from indexer.catalog.collections import CollectionInfo
from indexer.catalog.context import Context
from indexer.store import label_repository, repository
from indexer.store.repository import DepthSpec

log = logging.getLogger(__name__)

UNLABELLED = -1
#: An item with several human labels: kept out of single-label training and prediction.
AMBIGUOUS = -2


@dataclass(frozen=True)
class LabelledVectors:
    ids: np.ndarray  # (n,) item ids, ascending
    x: np.ndarray  # (n, dim) float32 unit vectors
    y: np.ndarray  # (n,) class index, UNLABELLED or AMBIGUOUS
    classes: list[str]

    @property
    def labelled(self) -> np.ndarray:
        """Positions of items with exactly one human label."""
        return np.flatnonzero(self.y >= 0)

    @property
    def unlabelled(self) -> np.ndarray:
        """Positions of items without any human label."""
        return np.flatnonzero(self.y == UNLABELLED)


def load(ctx: Context, collection: CollectionInfo, depth: DepthSpec) -> LabelledVectors:
    with ctx.sessions() as session:
        humans = label_repository.human_labels(session, collection.id)
        chunks = list(repository.iter_vectors(session, collection.id, depth.name, depth.dim))
    ids = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, np.int64)
    x = np.concatenate([c[1] for c in chunks]) if chunks else np.zeros((0, depth.dim), np.float32)
    classes = sorted({names[0] for names in humans.values() if len(names) == 1})
    position = {name: i for i, name in enumerate(classes)}
    y = np.full(len(ids), UNLABELLED, dtype=np.int64)
    for row, item_id in enumerate(ids.tolist()):
        names = humans.get(item_id)
        if names:
            y[row] = position[names[0]] if len(names) == 1 else AMBIGUOUS
    ambiguous = int((y == AMBIGUOUS).sum())
    if ambiguous:
        log.info("%d item(s) with several human labels left out of single-label work", ambiguous)
    return LabelledVectors(ids, np.ascontiguousarray(x), y, classes)
