"""`strata collections create|list|show|delete`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from indexer.core.vocabulary import DEFAULT_FRAMING, FRAMINGS, POOLINGS
from service.cli.output import emit, table
from service.client import StrataClient
from service.generated.strata.v1 import strata_pb2 as pb


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
        # The live FAISS index's size per depth: equal to `vectors` when level; 0 for an
        # index this server has not opened yet (another replica's new collection).
        "index_vectors": {d.name: d.index_vectors for d in c.depths},
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


def register(commands: argparse._SubParsersAction, client_options: argparse.ArgumentParser) -> None:
    coll = commands.add_parser("collections", help="create, list, show, delete collections")
    coll_cmds = coll.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = coll_cmds.add_parser("create", parents=[client_options])
    create.add_argument("name")
    create.add_argument("--backbone", default=None, help="default efficientnet_lite0")
    create.add_argument("--depths", default=None, help="comma list (default edges,parts,semantics)")
    create.add_argument("--pooling", default=None, choices=POOLINGS)
    create.add_argument(
        "--framing",
        default=None,
        metavar="{" + ",".join(FRAMINGS) + "}",
        help=f"default {DEFAULT_FRAMING}. auto: thumbnails (shorter side under 336 px) seen "
        "whole, photos centre-cropped; whole: every image uncropped; center-crop: ImageNet's",
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
