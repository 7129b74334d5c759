"""`strata search`, `strata classify` and `strata embed`: questions about images."""

from __future__ import annotations

import argparse

from service.cli.inputs import UsageError, parse_pairs, read_images
from service.cli.output import emit
from service.client import StrataClient
from service.generated.strata.v1 import strata_pb2 as pb


def cmd_search(args: argparse.Namespace, client: StrataClient) -> int:
    queries: list[pb.Query] = [pb.Query(name=str(i), item_id=i) for i in args.id or []]
    queries += [pb.Query(name=uri, image=data) for uri, data in read_images(args.images)]
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
    document = {
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
            lines.append(f"query {r.query}")
            for d in r.results:
                lines.append(f"  {d.depth}:")
                for rank, h in enumerate(d.hits, 1):
                    labels = f"  [{', '.join(h.labels)}]" if h.labels else ""
                    lines.append(f"    {rank:>3}. {h.score:.4f}  #{h.id}  {h.uri}{labels}")
        return "\n".join(lines)

    emit(args, document, text)
    return 0


def cmd_classify(args: argparse.Namespace, client: StrataClient) -> int:
    images = read_images(args.images)
    if not images:
        raise UsageError("give at least one IMAGE")
    predictions = client.classify(images, k=args.k, backbone=args.backbone or "")
    document = {
        "predictions": [
            {"uri": p.uri, "top": [{"label": t.label, "score": round(t.score, 6)} for t in p.top]}
            | ({"error": p.error.message} if p.error.message else {})
            for p in predictions
        ]
    }

    def text() -> str:
        lines = []
        for p in predictions:
            if p.error.message:
                lines.append(f"{p.uri}: error: {p.error.message}")
                continue
            lines.append(f"{p.uri}: " + ", ".join(f"{t.label} ({t.score:.2f})" for t in p.top))
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
            f"{e.uri}: "
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
    search.set_defaults(run=cmd_search)

    classify = commands.add_parser(
        "classify", parents=[client_options], help="top-k ImageNet classes"
    )
    classify.add_argument("images", nargs="+", metavar="IMAGE")
    classify.add_argument("-k", type=int, default=5)
    classify.add_argument("--backbone", default=None)
    classify.set_defaults(run=cmd_classify)

    embed = commands.add_parser("embed", parents=[client_options], help="vectors, not stored")
    embed.add_argument("images", nargs="+", metavar="IMAGE")
    embed.add_argument("--collection", default=None)
    embed.add_argument("--backbone", default=None)
    embed.add_argument("--depth", action="append")
    embed.add_argument("--pooling", default=None, choices=["avg", "max", "gem"])
    embed.set_defaults(run=cmd_embed)
