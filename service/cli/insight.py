"""`strata explain` (Grad-CAM overlays) and `strata channels` (top images per channel): what
a depth looked at and what its channels respond to. Thin clients of the Insight service."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from service.cli.inputs import UsageError, read_images
from service.cli.output import emit, printable
from service.cli.pictures import Cell, ItemImages, image_grid, overlay
from service.client import StrataClient

#: Heatmap values are rounded to this many decimals in --json.
HEATMAP_DECIMALS = 4
#: Images per Explain call (each is a forward and a backward pass on the server).
IMAGES_PER_CALL = 8


def _safe_name(uri: str) -> str:
    stem = Path(uri).stem or "image"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80]


def cmd_explain(args: argparse.Namespace, client: StrataClient) -> int:
    images = read_images(args.images)
    if not images:
        raise UsageError("give at least one IMAGE")
    if args.label and args.imagenet_class:
        raise UsageError("give --label or --imagenet-class, not both")
    explanations = []
    with tqdm(total=len(images), unit="img", desc="explaining", file=sys.stderr) as bar:
        # Several calls of a few images: a progress bar, and far below the request limit.
        for start in range(0, len(images), IMAGES_PER_CALL):
            chunk = images[start : start + IMAGES_PER_CALL]
            explanations += client.explain(
                args.collection,
                chunk,
                depth=args.depth or "",
                label=args.label or "",
                imagenet_class=args.imagenet_class or "",
            )
            bar.update(len(chunk))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    used: set[str] = set()
    for position, e in enumerate(explanations):
        if e.error.message:
            entries.append({"uri": e.uri, "error": e.error.message})
            continue
        heatmap = np.asarray(e.heatmap.values, np.float32).reshape(e.heatmap.rows, e.heatmap.cols)
        name = f"{_safe_name(e.uri)}-{e.depth}-{_safe_name(e.target)}.png"
        if name in used:
            name = f"{position:03d}-{name}"
        used.add(name)
        png = out_dir / name
        overlay(e.framed, heatmap).save(png)
        entries.append(
            {
                "uri": e.uri,
                "target": e.target,
                "score": round(e.score, 6),
                "depth": e.depth,
                "heatmap": np.round(heatmap, HEATMAP_DECIMALS).tolist(),
                "png": str(png),
            }
        )

    def text() -> str:
        return "\n".join(
            f"{printable(x['uri'])}: error: {x['error']}"
            if "error" in x
            else f"{printable(x['uri'])}: {x['target']} ({x['score']:.2f}) at {x['depth']} "
            f"[{len(x['heatmap'])}x{len(x['heatmap'][0])}] -> {x['png']}"
            for x in entries
        )

    emit(args, {"explanations": entries}, text)
    return 1 if any("error" in x for x in entries) else 0


def cmd_channels(args: argparse.Namespace, client: StrataClient) -> int:
    report = client.channels(args.collection, args.depth, channels=args.channels, top=args.top)
    document: dict[str, Any] = {
        "depth": report.depth,
        "layer": report.layer,
        "items": report.items,
        "channels": [
            {
                "channel": c.index,
                "variance": round(c.variance, 8),
                "ids": [i.id for i in c.items],
                "values": [round(i.value, 6) for i in c.items],
            }
            for c in report.channels
        ],
    }
    if args.out:
        reader = ItemImages(client, args.collection)
        found = reader.fetch([(i.id, i.uri) for c in report.channels for i in c.items])
        rows = [
            (
                f"channel {c.index}",
                [Cell(found.get(i.id), f"#{i.id} {i.value:.3f}") for i in c.items],
            )
            for c in report.channels
        ]
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        image_grid(rows).save(out)
        document["png"] = str(out)

    def text() -> str:
        lines = [f"{report.layer} ({report.depth}), {report.items} items"]
        for c in report.channels:
            ids = " ".join(f"#{i.id}" for i in c.items)
            lines.append(f"  channel {c.index:>4}  variance {c.variance:.2e}  {ids}")
        if args.out:
            lines.append(f"grid: {document['png']}")
        return "\n".join(lines)

    emit(args, document, text)
    return 0


def register(commands: argparse._SubParsersAction, client_options: argparse.ArgumentParser) -> None:
    explain = commands.add_parser(
        "explain", parents=[client_options], help="Grad-CAM heatmaps: where a depth looked"
    )
    explain.add_argument("images", nargs="+", metavar="IMAGE")
    explain.add_argument("--collection", required=True)
    explain.add_argument(
        "--depth", default=None, help="default: the best probe's depth, else the deepest"
    )
    explain.add_argument("--label", default=None, help="a label of the stored probe")
    explain.add_argument(
        "--imagenet-class",
        default=None,
        help="class name, wnid or index (default: each image's top-1 class)",
    )
    explain.add_argument("--out", default="strata-explain", help="folder for overlay PNGs")
    explain.set_defaults(run=cmd_explain)

    channels = commands.add_parser(
        "channels", parents=[client_options], help="top images of the most varying channels"
    )
    channels.add_argument("--collection", required=True)
    channels.add_argument("--depth", required=True)
    channels.add_argument("--top", type=int, default=9, help="images per channel")
    channels.add_argument("--channels", type=int, default=8, help="how many channels")
    channels.add_argument("--out", default=None, help="write the image grid to FILE.png")
    channels.set_defaults(run=cmd_channels)
