"""`strata items get|delete|list`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from indexer.core.vocabulary import (
    DEFAULT_PAGE_SIZE,
    ITEM_ORDERS,
    LABEL_SOURCE_FILTERS,
    MAX_PAGE_SIZE,
)
from service.cli.inputs import parse_pairs
from service.cli.output import emit, table
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


def cmd_items_list(args: argparse.Namespace, client: StrataClient) -> int:
    page = client.list_items(
        args.collection,
        page_size=args.page_size,
        page_token=args.page_token,
        order_by=args.order_by,
        labels_any=args.label or [],
        metadata=dict(parse_pairs(args.meta or [])),
        label_source=args.source,
    )
    rows: list[dict[str, Any]] = [
        {
            "id": item.id,
            "uri": item.uri,
            "width": item.width,
            "height": item.height,
            "labels": [
                {"label": x.label, "source": x.source, "confidence": x.confidence}
                for x in item.labels
            ],
            "metadata": dict(item.metadata),
        }
        for item in page.items
    ]
    document = {"items": rows, "next_page_token": page.next_page_token, "total": page.total}

    def text() -> str:
        lines = table(
            [
                (
                    r["id"],
                    ", ".join(
                        f"{x['label']} ({x['source']} {x['confidence']:.2f})" for x in r["labels"]
                    )
                    or "-",
                    r["uri"],
                )
                for r in rows
            ],
            ("id", "labels", "uri"),
        )
        more = f"; next page: --page-token {page.next_page_token}" if page.next_page_token else ""
        return f"{lines}\n{len(rows)} of {page.total} item(s){more}"

    emit(args, document, text)
    return 0


def register(commands: argparse._SubParsersAction, client_options: argparse.ArgumentParser) -> None:
    items = commands.add_parser("items", help="list, get or delete stored items")
    item_cmds = items.add_subparsers(dest="action", required=True, metavar="ACTION")
    get = item_cmds.add_parser("get", parents=[client_options], help="one item by id")
    get.add_argument("id", type=int)
    get.add_argument("--collection", required=True)
    get.set_defaults(run=cmd_items_get)
    remove = item_cmds.add_parser("delete", parents=[client_options], help="items by id")
    remove.add_argument("ids", type=int, nargs="+")
    remove.add_argument("--collection", required=True)
    remove.set_defaults(run=cmd_items_delete)
    listing = item_cmds.add_parser("list", parents=[client_options], help="one page of items")
    listing.add_argument("--collection", required=True)
    listing.add_argument(
        "--page-size",
        type=int,
        default=DEFAULT_PAGE_SIZE,
        metavar="N",
        help=f"items per page, at most {MAX_PAGE_SIZE}",
    )
    listing.add_argument(
        "--page-token", default="", help="next_page_token of the previous page (same options)"
    )
    listing.add_argument(
        "--order-by",
        default="id",
        choices=ITEM_ORDERS,
        help="sort field, '-' first for descending (write --order-by=-confidence)",
    )
    listing.add_argument("--label", action="append", help="only items with any of these labels")
    listing.add_argument("--meta", action="append", help="only items with metadata KEY=VALUE")
    listing.add_argument(
        "--source",
        default="",
        choices=("", *LABEL_SOURCE_FILTERS),
        help="only items with human or predicted labels, or none at all",
    )
    listing.set_defaults(run=cmd_items_list)
