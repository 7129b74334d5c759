"""`strata map --collection NAME [--depth D] [--out map.png]`: the server's 2-D projection of
one depth drawn as a scatter PNG, coloured by each item's label (human first, else its
predicted label; grey when it has none)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np

from indexer.core.vocabulary import (
    DEFAULT_PROJECTION_METHOD,
    HUMAN,
    MAX_PAGE_SIZE,
    PROJECTION_METHODS,
)
from service.cli.output import emit
from service.client import StrataClient

#: Classes named in the legend; the rest share one "other" entry.
LEGEND_CLASSES = 20
UNLABELLED = "(no label)"
OTHER = "(other classes)"


def item_labels(client: StrataClient, collection: str) -> dict[int, str]:
    """id -> the label to colour by: a human label first, else the most confident one."""
    labels: dict[int, str] = {}
    token = ""
    while True:
        page = client.list_items(collection, page_size=MAX_PAGE_SIZE, page_token=token)
        for item in page.items:
            if item.labels:
                best = max(item.labels, key=lambda x: (x.source == HUMAN, x.confidence))
                labels[item.id] = best.label
        token = page.next_page_token
        if not token:
            return labels


def draw(
    xy: np.ndarray, names: list[str], title: str, out: Path, legend_classes: int = LEGEND_CLASSES
) -> list[str]:
    """Scatter `xy` coloured by `names`; the most frequent classes get their own colour and
    legend entry. Returns the classes named in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = Counter(n for n in names if n != UNLABELLED)
    shown = [name for name, _ in counts.most_common(legend_classes)]
    # Distinct hues: tab10 up to 10 classes (tab20 pairs similar shades), then tab20.
    palette = plt.get_cmap("tab10" if len(shown) <= 10 else "tab20")
    colours = {name: palette(i) for i, name in enumerate(shown)}
    groups = [(UNLABELLED, (0.75, 0.75, 0.75, 1.0)), (OTHER, (0.45, 0.45, 0.45, 1.0))]
    groups += [(name, colours[name]) for name in shown]
    key = np.array([n if n in colours or n == UNLABELLED else OTHER for n in names])
    size = max(1.0, min(24.0, 6000.0 / max(1, len(xy))))
    figure, axes = plt.subplots(figsize=(9, 7.5), dpi=120)
    for name, colour in groups:
        chosen = key == name
        if chosen.any():
            axes.scatter(
                xy[chosen, 0],
                xy[chosen, 1],
                s=size,
                color=colour,
                label=f"{name} ({int(chosen.sum()):,})",
                linewidths=0,
                alpha=0.85,
            )
    axes.set_title(title)
    axes.set_aspect("equal")
    axes.set_xticks([])
    axes.set_yticks([])
    if len(xy):
        axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, markerscale=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, bbox_inches="tight")  # the legend sits outside the axes
    plt.close(figure)
    return shown


def cmd_map(args: argparse.Namespace, client: StrataClient) -> int:
    projection = client.get_projection(args.collection, depth=args.depth, method=args.method)
    ids = np.frombuffer(projection.ids, dtype="<i8")
    xy = np.frombuffer(projection.xy, dtype="<f4").reshape(-1, 2)
    labels = item_labels(client, args.collection)
    names = [labels.get(int(i), UNLABELLED) for i in ids]
    title = (
        f"{projection.collection} · {projection.depth} · {projection.method.upper()} · "
        f"{projection.count:,} items"
    )
    out = Path(args.out)
    legend = draw(xy, names, title, out)
    document = {
        "out": str(out),
        "collection": projection.collection,
        "depth": projection.depth,
        "method": projection.method,
        "count": projection.count,
        "cached": projection.cached,
        "seconds": round(projection.seconds, 3),
        "classes": legend,
    }
    how = "cached" if projection.cached else f"computed in {projection.seconds:.2f} s"
    emit(args, document, lambda: f"wrote {out}: {projection.count:,} points ({how})")
    return 0


def register(commands: argparse._SubParsersAction, client_options: argparse.ArgumentParser) -> None:
    drawing = commands.add_parser(
        "map", parents=[client_options], help="draw a 2-D map of one depth as a PNG"
    )
    drawing.add_argument("--collection", required=True)
    drawing.add_argument("--depth", default="", help="default: the collection's deepest depth")
    drawing.add_argument("--method", default=DEFAULT_PROJECTION_METHOD, choices=PROJECTION_METHODS)
    drawing.add_argument("--out", default="map.png", help="PNG to write (default map.png)")
    drawing.set_defaults(run=cmd_map)
