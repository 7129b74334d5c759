"""`strata search`, `strata classify` and `strata embed`: questions about images."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from indexer.core.vocabulary import POOLINGS
from service.cli.inputs import UsageError, parse_pairs, read_images
from service.cli.output import emit, printable
from service.cli.pictures import Cell, ItemImages, decode_image, image_grid
from service.client import StrataClient
from service.generated.strata.v1 import strata_pb2 as pb


def cmd_search(args: argparse.Namespace, client: StrataClient) -> int:
    queries: list[pb.Query] = [pb.Query(name=str(i), item_id=i) for i in args.id or []]
    queries += [pb.Query(name=uri, image=data) for uri, data in read_images(args.images)]
    if args.out and not args.out.lower().endswith(".png"):
        raise UsageError(f"--out {args.out!r}: the grid is a PNG; name it FILE.png")
    if not queries:
        raise UsageError("give at least one IMAGE or --id N")
    results = client.search(
        args.collection,
        queries,
        depths=args.depth or [],
        k=args.k,
        labels_any=args.label or [],
        metadata=dict(parse_pairs(args.meta or [])),
    )
    id_queries = {str(i) for i in args.id or []}
    document: dict[str, object] = {
        "queries": [
            {
                "query": int(r.query) if r.query in id_queries else r.query,
                "results": {
                    d.depth: [
                        {
                            "id": h.id,
                            "uri": h.uri,
                            "score": round(h.score, 6),
                            "labels": list(h.labels),
                        }
                        for h in d.hits
                    ]
                    for d in r.results
                },
            }
            for r in results
        ]
    }

    def text() -> str:
        lines = []
        for r in results:
            lines.append(f"query {printable(r.query)}")
            for d in r.results:
                lines.append(f"  {d.depth}:")
                for rank, h in enumerate(d.hits, 1):
                    labels = f"  [{printable(', '.join(h.labels))}]" if h.labels else ""
                    uri = printable(h.uri)
                    lines.append(f"    {rank:>3}. {h.score:.4f}  #{h.id}  {uri}{labels}")
        return "\n".join(lines)

    if args.out:
        document["png"] = write_search_grid(client, args.collection, queries, results, args.out)
    # As `channels --out` says it: where the picture went.
    emit(args, document, lambda: text() + (f"\ngrid: {document['png']}" if args.out else ""))
    return 0


def write_search_grid(
    client: StrataClient,
    collection: str,
    queries: Sequence[pb.Query],
    results: Sequence[pb.QueryResult],
    out: str,
) -> str:
    """One row per (query, depth): the query image, then its neighbours best first."""
    reader = ItemImages(client, collection)
    hits = [(h.id, h.uri) for r in results for d in r.results for h in d.hits]
    stored = [(q.item_id, client.get_item(collection, q.item_id).uri) for q in queries if q.item_id]
    found = reader.fetch(hits + stored)
    query_images: dict[str, Image.Image | None] = {}
    for q in queries:
        kind = q.WhichOneof("source")
        if kind == "image":
            query_images[q.name] = decode_image(q.image)
        elif kind == "item_id":
            query_images[q.name] = found.get(q.item_id)
    rows = []
    for r in results:
        for d in r.results:
            cells = [Cell(query_images.get(r.query), f"query: {Path(r.query).name}")]
            cells += [Cell(found.get(h.id), f"{h.score:.3f} #{h.id}") for h in d.hits]
            rows.append((d.depth, cells))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    image_grid(rows).save(path)
    return str(path)


def cmd_classify(args: argparse.Namespace, client: StrataClient) -> int:
    images = read_images(args.images)
    if not images:
        raise UsageError("give at least one IMAGE")
    predictions = client.classify(
        images, k=args.k, backbone=args.backbone or "", coarse=args.k if args.coarse else 0
    )

    def scores(entries: Sequence[pb.ClassScore]) -> list[dict[str, object]]:
        return [
            {"label": t.label, "score": round(t.score, 6)}
            | ({"wnid": t.wnid, "path": list(t.path)} if t.wnid else {})
            for t in entries
        ]

    document = {
        "predictions": [
            {"uri": p.uri, "top": scores(p.top)}
            | ({"coarse": scores(p.coarse)} if args.coarse else {})
            | ({"error": p.error.message} if p.error.message else {})
            for p in predictions
        ]
    }

    def text() -> str:
        lines = []
        for p in predictions:
            if p.error.message:
                lines.append(f"{printable(p.uri)}: error: {p.error.message}")
                continue
            lines.append(
                f"{printable(p.uri)}: " + ", ".join(f"{t.label} ({t.score:.2f})" for t in p.top)
            )
            if args.coarse:
                lines.append(
                    "  coarse: " + ", ".join(f"{t.label} ({t.score:.2f})" for t in p.coarse)
                )
        return "\n".join(lines)

    emit(args, document, text)
    return 1 if any(p.error.message for p in predictions) else 0


def cmd_embed(args: argparse.Namespace, client: StrataClient) -> int:
    images = read_images(args.images)
    embeddings = client.embed(
        images,
        collection=args.collection or "",
        backbone=args.backbone or "",
        depths=args.depth or [],
        pooling=args.pooling or "",
    )
    document = {
        "embeddings": [
            {"uri": e.uri, "vectors": {v.depth: [round(x, 7) for x in v.values] for v in e.vectors}}
            | ({"error": e.error.message} if e.error.message else {})
            for e in embeddings
        ]
    }
    emit(
        args,
        document,
        lambda: "\n".join(
            f"{printable(e.uri)}: "
            + (e.error.message or ", ".join(f"{v.depth} [{len(v.values)}]" for v in e.vectors))
            for e in embeddings
        ),
    )
    return 1 if any(e.error.message for e in embeddings) else 0


def register(commands: argparse._SubParsersAction, client_options: argparse.ArgumentParser) -> None:
    search = commands.add_parser("search", parents=[client_options], help="nearest neighbours")
    search.add_argument("images", nargs="*", metavar="IMAGE")
    search.add_argument("--id", type=int, action="append", help="query by stored item id")
    search.add_argument("--collection", required=True)
    search.add_argument("--depth", action="append", help="repeatable; default every depth")
    search.add_argument("-k", type=int, default=10)
    search.add_argument("--label", action="append", help="only items with any of these labels")
    search.add_argument("--meta", action="append", help="only items with metadata KEY=VALUE")
    search.add_argument(
        "--out", default=None, help="write the query and its neighbours per depth to FILE.png"
    )
    search.set_defaults(run=cmd_search)

    classify = commands.add_parser(
        "classify", parents=[client_options], help="top-k ImageNet classes"
    )
    classify.add_argument("images", nargs="+", metavar="IMAGE")
    classify.add_argument("-k", type=int, default=5)
    classify.add_argument("--backbone", default=None)
    classify.add_argument(
        "--coarse",
        action="store_true",
        help="also the top coarse WordNet categories (any cat -> feline, any dog -> dog)",
    )
    classify.set_defaults(run=cmd_classify)

    embed = commands.add_parser("embed", parents=[client_options], help="vectors, not stored")
    embed.add_argument("images", nargs="+", metavar="IMAGE")
    embed.add_argument("--collection", default=None)
    embed.add_argument("--backbone", default=None)
    embed.add_argument("--depth", action="append")
    embed.add_argument("--pooling", default=None, choices=POOLINGS)
    embed.set_defaults(run=cmd_embed)
