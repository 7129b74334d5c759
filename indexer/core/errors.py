"""Domain errors raised by the library.

Each error carries a message that names the item and the reason, and a hint that says how
to fix it. The service maps each class to a gRPC status code in exactly one place
(`service/errors.py`); the library never imports gRPC.
"""

from __future__ import annotations

#: The most characters of caller input an error message quotes: a 10k-character name quoted
#: whole would push the status details past gRPC's metadata limit and turn a clear
#: INVALID_ARGUMENT into a transport-level RESOURCE_EXHAUSTED; 512 keeps any real path whole.
QUOTE_LIMIT = 512
#: The longest message an error carries (several quotes, lists of ids); longer is cut.
MESSAGE_LIMIT = 2000


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """`repr(value)` for an error message, cut to `limit` characters with the length said."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:limit]}… ({size:,} characters)"


def clip(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """Cut a whole message to `limit` characters, keeping its start and end."""
    if len(message) <= limit:
        return message
    keep = (limit - 20) // 2
    return f"{message[:keep]} …[cut]… {message[-keep:]}"


class StrataError(Exception):
    """Base class of every error the library raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = clip(message)
        hint = clip(hint) if hint is not None else None
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} Hint: {self.hint}" if self.hint else self.message


class InvalidInput(StrataError):
    """The caller sent something malformed: bad image bytes, bad parameter values."""


class InvalidImage(InvalidInput):
    """Image bytes that cannot be decoded safely (empty, truncated, bomb, format off the list)."""


class NotFound(StrataError):
    """A named thing (collection, item, backbone, layer, probe) does not exist."""


class AlreadyExists(StrataError):
    """Creating something whose name is taken."""


class FailedPrecondition(StrataError):
    """The request is well formed but the system is not in a state to serve it."""


class WeightsMissing(FailedPrecondition):
    """A backbone's pretrained weights are not on disk; random weights are never served."""


class ResourceExhausted(StrataError):
    """A limit was hit: too many concurrent requests, a batch or k too large."""


class Aborted(StrataError):
    """A concurrent change got in the way (the collection was deleted meanwhile); retrying
    may succeed."""


class Unavailable(StrataError):
    """A dependency (the database) is away for now; the same call may succeed later."""


class PermissionDenied(StrataError):
    """The caller's credentials do not allow this operation."""


class Unauthenticated(StrataError):
    """The caller presented no valid credentials."""


def missing_items(missing: list[int], collection_name: str, hint: str) -> NotFound:
    """The one wording of "these item ids are not in the collection" (the first 20 named)."""
    return NotFound(
        f"item id(s) {', '.join(map(str, missing[:20]))} do not exist in collection "
        f"{quote(collection_name)}",
        hint=hint,
    )
