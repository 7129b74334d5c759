"""Plain data for pages and JSON answers, built from protobuf messages (the web app's own
mapping, so templates and scripts never see protobuf)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from indexer.core.vocabulary import HUMAN, PREDICTED
from service.generated.strata.v1 import labels_pb2, strata_pb2


def collection(c: strata_pb2.Collection) -> dict[str, Any]:
    return {
        "name": c.name,
        "backbone": c.backbone,
        "pooling": c.pooling,
        "framing": c.framing,
        "items": int(c.items),
        "depths": [
            {"name": d.name, "layer": d.layer, "dim": int(d.dim), "vectors": int(d.vectors)}
            for d in c.depths
        ],
    }


def item(i: strata_pb2.Item) -> dict[str, Any]:
    return {
        "id": int(i.id),
        "uri": i.uri,
        "width": int(i.width),
        "height": int(i.height),
        "content_hash": i.content_hash,
        "labels": [
            {"label": x.label, "source": x.source, "confidence": round(float(x.confidence), 4)}
            for x in i.labels
        ],
        "metadata": dict(i.metadata),
    }


def hits(result: strata_pb2.QueryResult) -> list[dict[str, Any]]:
    return [
        {
            "depth": depth.depth,
            "hits": [
                {
                    "id": int(h.id),
                    "uri": h.uri,
                    "score": round(float(h.score), 4),
                    "labels": list(h.labels),
                }
                for h in depth.hits
            ],
        }
        for depth in result.results
    ]


def tags(prediction: strata_pb2.Prediction) -> list[dict[str, Any]]:
    return [{"label": t.label, "score": round(float(t.score), 4)} for t in prediction.top]


def probe(depth: labels_pb2.DepthProbe) -> dict[str, Any]:
    classes = list(depth.classes)
    supports = [int(m.support) for m in depth.per_class]
    total = sum(supports)
    return {
        "depth": depth.depth,
        "dim": int(depth.dim),
        "accuracy": float(depth.accuracy),
        "macro_f1": float(depth.macro_f1),
        "n_train": int(depth.n_train),
        "n_test": int(depth.n_test),
        "folds": int(depth.folds),
        "classes": classes,
        "per_class": [
            {"label": m.label, "accuracy": float(m.accuracy), "support": int(m.support)}
            for m in depth.per_class
        ],
        "confusion": [int(v) for v in depth.confusion],
        # Always answering the most frequent class scores this: the line to beat.
        "chance": (max(supports) / total) if total else 0.0,
    }


def compact_labels(rows: Iterable[labels_pb2.ItemLabel]) -> dict[str, Any]:
    """Every item's first human and first predicted label as parallel arrays of class
    indices (-1 = none): one small JSON document for the whole map, whatever N."""
    classes: dict[str, int] = {}
    human: dict[int, int] = {}
    predicted: dict[int, tuple[int, float]] = {}
    for row in rows:
        index = classes.setdefault(row.label, len(classes))
        if row.source == HUMAN:
            human.setdefault(int(row.id), index)
        elif row.source == PREDICTED and int(row.id) not in predicted:
            predicted[int(row.id)] = (index, float(row.confidence))
    ids = sorted(set(human) | set(predicted))
    return {
        "classes": list(classes),
        "ids": ids,
        "human": [human.get(i, -1) for i in ids],
        "predicted": [predicted[i][0] if i in predicted else -1 for i in ids],
        "confidence": [round(predicted[i][1], 4) if i in predicted else -1 for i in ids],
    }


def label_classes(rows: Sequence[labels_pb2.ItemLabel]) -> list[str]:
    """Class names for the workbench's number keys: human labels first (by frequency), then
    labels only the predictors used."""
    counts: dict[str, int] = {}
    for row in rows:
        if row.source == HUMAN:
            counts[row.label] = counts.get(row.label, 0) + 1
    names = sorted(counts, key=lambda name: (-counts[name], name))
    names += sorted({r.label for r in rows if r.source != HUMAN} - set(names))
    return names
