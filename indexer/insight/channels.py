"""What a depth's channels respond to (Zeiler & Fergus 2014, top-activating images): the
channels that vary most across a collection, each with the items that activate it most.

Read from the stored pooled vectors (no forward pass), streamed in chunks: one pass for the
per-channel variance, one for the top items of the chosen channels, so memory stays at one
chunk plus (channels x top) whatever the collection's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.catalog.collections import get_collection
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput, NotFound, quote
from indexer.store import label_repository, repository

DEFAULT_CHANNELS = 8
DEFAULT_TOP = 9
MAX_CHANNELS = 256
MAX_TOP = 100


@dataclass(frozen=True)
class ChannelItem:
    id: int
    uri: str
    value: float  # the channel's value in the stored unit vector


@dataclass(frozen=True)
class Channel:
    index: int
    variance: float
    items: list[ChannelItem]  # most activating first


@dataclass(frozen=True)
class ChannelsReport:
    depth: str
    layer: str
    items: int
    channels: list[Channel]  # most varying first


def top_channels(
    ctx: Context,
    collection_name: str,
    depth: str,
    channels: int = DEFAULT_CHANNELS,
    top: int = DEFAULT_TOP,
) -> ChannelsReport:
    if not 1 <= channels <= MAX_CHANNELS:
        raise InvalidInput(f"channels={channels} is out of range", hint=f"use 1..{MAX_CHANNELS}")
    if not 1 <= top <= MAX_TOP:
        raise InvalidInput(f"top={top} is out of range", hint=f"use 1..{MAX_TOP}")
    if not depth:
        raise InvalidInput("channels needs a depth", hint="give --depth, e.g. parts")
    collection = get_collection(ctx, collection_name)
    spec = collection.depth(depth)
    with ctx.sessions() as session:
        count, total, squares = 0, np.zeros(spec.dim), np.zeros(spec.dim)
        for _, matrix in repository.iter_vectors(session, collection.id, spec.name, spec.dim):
            count += len(matrix)
            total += matrix.sum(axis=0, dtype=np.float64)
            squares += np.square(matrix, dtype=np.float64).sum(axis=0)
        if count == 0:
            raise NotFound(
                f"collection {quote(collection_name)} has no vectors at depth {quote(spec.name)}",
                hint="add images first: strata index",
            )
        variance = np.maximum(squares / count - np.square(total / count), 0.0)
        # Stable order: ties (e.g. channels that are always zero) go by channel index.
        chosen = np.argsort(-variance, kind="stable")[: min(channels, spec.dim)]
        best_ids = np.zeros((len(chosen), 0), np.int64)
        best_values = np.zeros((len(chosen), 0), np.float32)
        for ids, matrix in repository.iter_vectors(session, collection.id, spec.name, spec.dim):
            values = np.concatenate([best_values, matrix[:, chosen].T], axis=1)
            tiled = np.broadcast_to(ids, (len(chosen), len(ids)))
            candidates = np.concatenate([best_ids, tiled], axis=1)
            keep = np.argsort(-values, axis=1, kind="stable")[:, :top]
            best_values = np.take_along_axis(values, keep, axis=1)
            best_ids = np.take_along_axis(candidates, keep, axis=1)
        found = sorted({int(i) for i in best_ids.ravel()})
        uris = label_repository.item_uris(session, collection.id, found)
    return ChannelsReport(
        depth=spec.name,
        layer=spec.layer,
        items=count,
        channels=[
            Channel(
                int(c),
                float(variance[c]),
                [
                    ChannelItem(int(i), uris.get(int(i), ""), float(v))
                    for i, v in zip(best_ids[row], best_values[row], strict=True)
                ],
            )
            for row, c in enumerate(chosen)
        ],
    )
