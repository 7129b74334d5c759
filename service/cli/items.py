"""`strata items get|delete`."""

from __future__ import annotations

import argparse
import json

from service.cli.output import emit
from service.client import StrataClient


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


def register(commands: argparse._SubParsersAction, client_options: argparse.ArgumentParser) -> None:
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
