"""Domain errors raised by the library.

Each error carries a message that names the item and the reason, and a hint that says how
to fix it. The service maps each class to a gRPC status code in exactly one place
(`service/errors.py`); the library never imports gRPC.
"""

from __future__ import annotations


class StrataError(Exception):
    """Base class of every error the library raises on purpose."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
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


class PermissionDenied(StrataError):
    """The caller's credentials do not allow this operation."""


class Unauthenticated(StrataError):
    """The caller presented no valid credentials."""
