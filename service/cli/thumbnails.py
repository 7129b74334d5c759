"""`strata thumbnails backfill PATH... --collection NAME`: thumbnails for items indexed
before thumbnails existed, made by the server from the original files (matched by uri, as
`strata index` stored them, and checked there against each item's content hash)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from indexer.core.vocabulary import MAX_PAGE_SIZE
from service.cli.inputs import expand_paths
from service.cli.output import emit, printable
from service.client import StrataClient


def items_without_thumbnails(client: StrataClient, collection: str) -> dict[str, int]:
    """uri -> id of every item that has no thumbnail yet."""
    found: dict[str, int] = {}
    token = ""
    while True:
        page = client.list_items(
            collection, page_size=MAX_PAGE_SIZE, page_token=token, without_thumbnail=True
        )
        found.update({item.uri: item.id for item in page.items})
        token = page.next_page_token
        if not token:
            return found


def cmd_backfill(args: argparse.Namespace, client: StrataClient) -> int:
    paths = expand_paths(args.paths)
    wanted = items_without_thumbnails(client, args.collection)
    matched: list[tuple[int, Path]] = []
    for path in paths:
        # `strata index` stores the path as given; accept the absolute path too.
        item_id = wanted.get(str(path), wanted.get(str(path.resolve())))
        if item_id is not None:
            matched.append((item_id, path))
    failed: list[dict[str, str]] = []

    def images() -> Iterator[tuple[int, bytes]]:
        with tqdm(
            total=len(matched), unit="img", desc="backfilling", file=sys.stderr, disable=args.quiet
        ) as bar:
            for item_id, path in matched:
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    failed.append({"uri": str(path), "error": f"cannot read: {exc.strerror}"})
                    continue
                yield item_id, data
                bar.update(1)

    answer = client.backfill_thumbnails(args.collection, images()) if matched else None
    by_id = {item_id: str(path) for item_id, path in matched}
    for refused in answer.failed if answer is not None else ():
        failed.append({"uri": by_id.get(refused.id, refused.uri), "error": refused.error.message})
    written = answer.written if answer is not None else 0
    document = {
        "written": written,
        "without_thumbnail": len(wanted),
        "matched": len(matched),
        "failed": failed,
    }
    left = len(wanted) - written
    emit(
        args,
        document,
        lambda: (
            f"wrote {written} thumbnail(s) from {len(matched)} matching file(s) of "
            f"{len(paths)}; {left} item(s) still without one"
            + "".join(f"\n  {printable(f['uri'])}: {f['error']}" for f in failed)
        ),
    )
    return 1 if failed else 0


def register(commands: argparse._SubParsersAction, client_options: argparse.ArgumentParser) -> None:
    thumbnails = commands.add_parser("thumbnails", help="thumbnails of stored items")
    actions = thumbnails.add_subparsers(dest="action", required=True, metavar="ACTION")
    backfill = actions.add_parser(
        "backfill",
        parents=[client_options],
        help="make the missing thumbnails from the original files (matched by uri)",
    )
    backfill.add_argument("paths", nargs="+", metavar="PATH")
    backfill.add_argument("--collection", required=True)
    backfill.add_argument("--quiet", action="store_true", help="no progress bar")
    backfill.set_defaults(run=cmd_backfill)
