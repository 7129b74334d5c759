"""What every command prints: one JSON document with --json, else text; tables."""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any


def emit(args: argparse.Namespace, document: dict[str, Any], text: Callable[[], str]) -> None:
    if args.json:
        json.dump(document, sys.stdout)
        sys.stdout.write("\n")
    else:
        print(text())


#: Bidirectional controls: they reorder the text around them on a terminal.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable(text: object) -> str:
    """Text for a terminal: control characters (a tab, a newline or an escape sequence in a
    stored uri or label, bidirectional overrides) as Python escapes, so they neither break
    a table's layout nor reach the terminal. Other characters, non-Latin scripts, emoji
    and wide spaces included, are left alone; --json output keeps the text as stored."""
    value = str(text)
    return "".join(
        repr(c)[1:-1] if unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS else c
        for c in value
    )


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [list(map(str, header))] + [[printable(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )
