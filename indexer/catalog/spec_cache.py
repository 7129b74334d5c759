"""Collection specs by name, for the hot path of a search.

A collection's id, backbone, framing, pooling and depths are fixed when it is created, and
ids are never reused (SQLite AUTOINCREMENT, PostgreSQL sequences), so a cached spec can
only go stale one way: its collection was deleted (and perhaps created again under the same
name, with a new id). Whoever uses an entry checks that its id still exists in a statement it
runs anyway (search checks it beside the hits' details) and evicts it if not.
"""

from __future__ import annotations

from typing import Generic, TypeVar

Spec = TypeVar("Spec")


class SpecCache(Generic[Spec]):
    def __init__(self, enabled: bool = True) -> None:
        """`enabled` False where ids can be reused (database.collection_ids_never_reused):
        there an id that still exists does not prove the spec is its collection's."""
        self.enabled = enabled
        # Plain dict operations are atomic under the GIL; a race only costs a second SELECT.
        self._by_name: dict[str, Spec] = {}

    def get(self, name: str) -> Spec | None:
        return self._by_name.get(name)

    def put(self, name: str, spec: Spec) -> None:
        if self.enabled:
            self._by_name[name] = spec

    def evict(self, name: str) -> None:
        self._by_name.pop(name, None)
