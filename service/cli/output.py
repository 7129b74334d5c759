"""What every command prints: one JSON document with --json, else text; tables."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any


def emit(args: argparse.Namespace, document: dict[str, Any], text: Callable[[], str]) -> None:
    if args.json:
        json.dump(document, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(text())


def printable(text: object) -> str:
    """Text for a terminal: control characters (a tab, a newline or an escape sequence in a
    stored uri or label) as Python escapes, so they neither break a table's layout nor
    reach the terminal. --json output keeps the text as stored."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [[printable(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )
