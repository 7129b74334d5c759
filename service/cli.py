"""`strata`: run the server, and talk to it (every client command takes --server and --json).

With --json a command prints exactly one JSON document on stdout; progress bars and
messages go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from service.client import ImageToAdd, StrataClient, StrataClientError, default_server
from service.generated.strata.v1 import strata_pb2 as pb

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


class UsageError(Exception):
    """Bad command-line input found before any call to the server."""


# -- output helpers ---------------------------------------------------------------------


def emit(args: argparse.Namespace, document: dict[str, Any], text: Callable[[], str]) -> None:
    if args.json:
        json.dump(document, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(text())


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


# -- image paths ------------------------------------------------------------------------


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files as given; folders walked recursively for image files, in sorted order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"{raw}: no such file or folder")
    return found


def read_images(paths: Sequence[str]) -> list[tuple[str, bytes]]:
    return [(str(p), p.read_bytes()) for p in expand_paths(paths)]


# -- commands ---------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from indexer.settings import Settings
    from service.server import serve

    settings = Settings.load(
        listen=args.listen,
        data_dir=Path(args.data) if args.data else None,
        database_url=args.database,
        device=args.device,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        tls_client_ca=Path(args.tls_client_ca) if args.tls_client_ca else None,
        read_tokens=tuple(args.read_token) if args.read_token else None,
        write_tokens=tuple(args.write_token) if args.write_token else None,
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(settings))
    return 0


def cmd_backbones(args: argparse.Namespace, client: StrataClient) -> int:
    backbones = client.list_backbones()
    document = {
        "backbones": [
            {
                "name": b.name,
                "description": b.description,
                "input_size": b.input_size,
                "presets": dict(b.presets),
                "weights_available": b.weights_available,
                "weights": b.weights_hint,
            }
            for b in backbones
        ]
    }
    rows = [
        (b.name, "yes" if b.weights_available else "no", b.input_size, b.description)
        for b in backbones
    ]
    emit(args, document, lambda: table(rows, ("backbone", "weights", "input", "description")))
    return 0


def cmd_layers(args: argparse.Namespace, client: StrataClient) -> int:
    response = client.list_layers(args.backbone or "")
    layers: list[dict[str, Any]] = [
        {
            "name": layer.name,
            "channels": layer.channels,
            "stride": layer.stride or None,
            "presets": list(layer.presets),
        }
        for layer in response.layers
        if not args.presets or layer.presets
    ]
    rows = [
        (x["name"], x["channels"], x["stride"] or "pooled", ",".join(x["presets"])) for x in layers
    ]
    emit(
        args,
        {"backbone": response.backbone, "layers": layers},
        lambda: (
            f"backbone {response.backbone}\n"
            + table(rows, ("layer", "channels", "stride", "preset"))
        ),
    )
    return 0


def collection_doc(c: pb.Collection) -> dict[str, Any]:
    return {
        "name": c.name,
        "backbone": c.backbone,
        "pooling": c.pooling,
        "framing": c.framing,
        "depths": [d.name for d in c.depths],
        "layers": {d.name: d.layer for d in c.depths},
        "dims": {d.name: d.dim for d in c.depths},
        "items": c.items,
        "vectors": {d.name: d.vectors for d in c.depths},
    }


def cmd_collections_create(args: argparse.Namespace, client: StrataClient) -> int:
    depths = [d for d in (args.depths or "").split(",") if d]
    created = client.create_collection(
        args.name, args.backbone or "", depths, args.pooling or "", args.framing or ""
    )
    doc = collection_doc(created)
    emit(
        args,
        doc,
        lambda: (
            f"created collection {created.name} ({created.backbone}, {created.pooling} "
            f"pooling, {created.framing} framing): "
            + ", ".join(f"{d.name}={d.layer} [{d.dim}]" for d in created.depths)
        ),
    )
    return 0


def cmd_collections_list(args: argparse.Namespace, client: StrataClient) -> int:
    found = client.list_collections()
    docs = [collection_doc(c) for c in found]
    rows = [
        (
            d["name"],
            d["backbone"],
            ",".join(d["depths"]),
            d["items"],
            " ".join(f"{k}={v}" for k, v in d["vectors"].items()),
        )
        for d in docs
    ]
    emit(
        args,
        {"collections": docs},
        lambda: (
            table(rows, ("name", "backbone", "depths", "items", "vectors"))
            if rows
            else "no collections yet: create one with `strata collections create NAME`"
        ),
    )
    return 0


def cmd_collections_show(args: argparse.Namespace, client: StrataClient) -> int:
    doc = collection_doc(client.get_collection(args.name))
    emit(args, doc, lambda: json.dumps(doc, indent=2))
    return 0


def cmd_collections_delete(args: argparse.Namespace, client: StrataClient) -> int:
    client.delete_collection(args.name)
    emit(args, {"deleted": args.name}, lambda: f"deleted collection {args.name}")
    return 0


def cmd_index(args: argparse.Namespace, client: StrataClient) -> int:
    paths = expand_paths(args.paths)
    failed: list[dict[str, str]] = []
    counts = {"added": 0, "replaced": 0, "unchanged": 0}

    def images() -> Iterator[ImageToAdd]:
        for path in paths:
            try:
                data = path.read_bytes()
            except OSError as exc:
                failed.append({"uri": str(path), "error": f"cannot read: {exc.strerror}"})
                continue
            labels = [path.parent.name] if args.labels_from_folders and path.parent.name else []
            yield ImageToAdd(str(path), data, labels)

    with tqdm(
        total=len(paths), unit="img", desc="indexing", file=sys.stderr, disable=args.quiet
    ) as bar:
        for result in client.add_images(args.collection, images()):
            if result.status == "failed":
                reason = result.error.message + (
                    f" ({result.error.code})" if result.error.code else ""
                )
                failed.append({"uri": result.uri, "error": reason})
            else:
                counts[result.status] = counts.get(result.status, 0) + 1
            bar.update(1)
        bar.update(len(paths) - bar.n)
    document = {
        "added": counts["added"],
        "replaced": counts["replaced"],
        "unchanged": counts["unchanged"],
        "failed": failed,
    }
    emit(
        args,
        document,
        lambda: (
            f"added {counts['added']}, replaced {counts['replaced']}, unchanged "
            f"{counts['unchanged']}, failed {len(failed)}"
            + "".join(f"\n  {f['error']}" for f in failed)  # each error names its file
        ),
    )
    return 1 if failed else 0


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
        metadata=dict(_pairs(args.meta or [])),
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


def cmd_items_get(args: argparse.Namespace, client: StrataClient) -> int:
    item = client.get_item(args.collection, args.id)
    document = {
        "id": item.id,
        "uri": item.uri,
        "content_hash": item.content_hash,
        "width": item.width,
        "height": item.height,
        "labels": [
            {"label": x.label, "source": x.source, "confidence": x.confidence} for x in item.labels
        ],
        "metadata": dict(item.metadata),
    }
    emit(args, document, lambda: json.dumps(document, indent=2))
    return 0


def cmd_items_delete(args: argparse.Namespace, client: StrataClient) -> int:
    deleted = client.delete_items(args.collection, args.ids)
    emit(args, {"deleted": deleted}, lambda: f"deleted {len(deleted)} item(s)")
    return 0


def _pairs(values: Sequence[str]) -> Iterator[tuple[str, str]]:
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep:
            raise UsageError(f"--meta {value!r} is not KEY=VALUE")
        yield key, rest


# -- parser -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strata",
        description="Layered ImageNet CNN embeddings: similarity search, probes, labels.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    client_options = argparse.ArgumentParser(add_help=False)
    client_options.add_argument(
        "--server", default=None, help=f"HOST:PORT (env STRATA_SERVER, default {default_server()})"
    )
    client_options.add_argument("--json", action="store_true", help="print one JSON document")
    client_options.add_argument("--timeout", type=float, default=None, help="seconds per call")
    client_options.add_argument("--token", default=None, help="bearer token (env STRATA_TOKEN)")
    client_options.add_argument(
        "--ca", default=None, help="PEM CA that signed the server's certificate: use TLS"
    )
    client_options.add_argument("--cert", default=None, help="PEM client certificate (mTLS)")
    client_options.add_argument("--key", default=None, help="PEM key of --cert (mTLS)")

    serve = commands.add_parser("serve", help="run the gRPC server until SIGINT/SIGTERM")
    serve.add_argument("--listen", default=None, help="HOST:PORT (default 127.0.0.1:50051)")
    serve.add_argument("--data", default=None, help="data folder (default ./strata-data)")
    serve.add_argument("--database", default=None, help="SQLAlchemy URL (default SQLite in --data)")
    serve.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    serve.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve TLS")
    serve.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    serve.add_argument(
        "--tls-client-ca", default=None, help="PEM CA: clients need a certificate it signed"
    )
    serve.add_argument(
        "--read-token",
        action="append",
        help="repeatable; prefer STRATA_READ_TOKENS=a,b (flags show in `ps`)",
    )
    serve.add_argument(
        "--write-token",
        action="append",
        help="repeatable read-write token; prefer STRATA_WRITE_TOKENS",
    )
    serve.set_defaults(run=cmd_serve)

    backbones = commands.add_parser("backbones", parents=[client_options], help="list backbones")
    backbones.set_defaults(run=cmd_backbones)

    layers = commands.add_parser(
        "layers", parents=[client_options], help="list a backbone's layers"
    )
    layers.add_argument("--backbone", default=None)
    layers.add_argument("--presets", action="store_true", help="only the preset depths")
    layers.set_defaults(run=cmd_layers)

    coll = commands.add_parser("collections", help="create, list, show, delete collections")
    coll_cmds = coll.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = coll_cmds.add_parser("create", parents=[client_options])
    create.add_argument("name")
    create.add_argument("--backbone", default=None, help="default efficientnet_lite0")
    create.add_argument("--depths", default=None, help="comma list (default edges,parts,semantics)")
    create.add_argument("--pooling", default=None, choices=["avg", "max", "gem"])
    create.add_argument(
        "--framing",
        default=None,
        metavar="{center-crop,whole}",
        help="center-crop (default, ImageNet recipe) or whole: see the image uncropped, "
        "for thumbnails and tightly framed photos such as CIFAR",
    )
    create.set_defaults(run=cmd_collections_create)
    coll_list = coll_cmds.add_parser("list", parents=[client_options])
    coll_list.set_defaults(run=cmd_collections_list)
    show = coll_cmds.add_parser("show", parents=[client_options])
    show.add_argument("name")
    show.set_defaults(run=cmd_collections_show)
    delete = coll_cmds.add_parser("delete", parents=[client_options])
    delete.add_argument("name")
    delete.set_defaults(run=cmd_collections_delete)

    index = commands.add_parser("index", parents=[client_options], help="add image files/folders")
    index.add_argument("paths", nargs="+", metavar="PATH")
    index.add_argument("--collection", required=True)
    index.add_argument(
        "--labels-from-folders", action="store_true", help="label each image with its folder's name"
    )
    index.add_argument("--quiet", action="store_true", help="no progress bar")
    index.set_defaults(run=cmd_index)

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

    items = commands.add_parser("items", help="get or delete stored items")
    item_cmds = items.add_subparsers(dest="action", required=True, metavar="ACTION")
    get = item_cmds.add_parser("get", parents=[client_options])
    get.add_argument("id", type=int)
    get.add_argument("--collection", required=True)
    get.set_defaults(run=cmd_items_get)
    remove = item_cmds.add_parser("delete", parents=[client_options])
    remove.add_argument("ids", type=int, nargs="+")
    remove.add_argument("--collection", required=True)
    remove.set_defaults(run=cmd_items_delete)

    from service.cli_labels import add_label_commands  # imports this module

    add_label_commands(commands, client_options)
    return parser


def _read_pem(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run is cmd_serve:
        return cmd_serve(args)
    try:
        with StrataClient(
            args.server,
            timeout=args.timeout,
            token=args.token or os.environ.get("STRATA_TOKEN") or None,
            root_certificates=_read_pem(args.ca),
            private_key=_read_pem(args.key),
            certificate_chain=_read_pem(args.cert),
        ) as client:
            return int(args.run(args, client))
    except (StrataClientError, UsageError, OSError) as exc:
        if isinstance(exc, StrataClientError):
            code, message = exc.code, exc.details
        elif isinstance(exc, UsageError):
            code, message = "USAGE", str(exc)
        else:
            code, message = "OS_ERROR", str(exc)
        if args.json:
            print(json.dumps({"error": {"code": code, "message": message}}))
        print(f"strata: error: {code}: {message}", file=sys.stderr)
        return 2 if code == "USAGE" else 1


if __name__ == "__main__":
    sys.exit(main())
