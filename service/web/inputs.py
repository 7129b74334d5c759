"""What the app checks in a request before any gRPC call: ids within int64, JSON bodies of
valid text, bearer tokens gRPC can carry. Refusals are BadRequest (answered 400)."""

from __future__ import annotations

import json
from typing import Any

#: Item ids are int64 on the wire.
MAX_ID = 2**63 - 1


class BadRequest(Exception):
    """Input the app refuses before calling gRPC (answered 400 with this message)."""


def item_id(raw: object) -> int:
    """An item id from a path's {id:int} or a query string."""
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()):
        raise BadRequest(f"item id {text[:40]!r} is not a whole number")
    value = int(text)
    if not 1 <= value <= MAX_ID:
        raise BadRequest(f"item id {value} is out of range: ids are 1..{MAX_ID}")
    return value


def ids(body: dict[str, Any]) -> list[int]:
    listed = body.get("ids")
    if (
        not isinstance(listed, list)
        or not listed
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in listed)
    ):
        raise BadRequest('"ids" must be a non-empty list of item ids (whole numbers)')
    return [item_id(i) for i in listed]


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object whose text is valid Unicode (JSON's \\ud800 escapes
    can spell lone surrogates, which no gRPC string can carry)."""
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise BadRequest("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise BadRequest("the request body holds text that is not valid Unicode") from None
    return body


def usable_token(token: str) -> bool:
    """A bearer token gRPC metadata can carry: visible ASCII, no spaces."""
    return bool(token) and all("!" <= c <= "~" for c in token)
