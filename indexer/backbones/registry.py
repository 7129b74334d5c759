"""The backbone registry: entries are data, registered by the family modules (which the
package `indexer.backbones` imports, so importing any backbone module fills the registry)."""

from __future__ import annotations

from collections.abc import Callable

from indexer.backbones.spec import BackboneSpec
from indexer.core.errors import NotFound, quote

_REGISTRY: dict[str, BackboneSpec] = {}


def register(factory: Callable[[], BackboneSpec]) -> Callable[[], BackboneSpec]:
    """Decorator for a function that returns a spec; the spec is registered under its name."""
    spec = factory()
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone {quote(spec.name)} registered twice")
    _REGISTRY[spec.name] = spec
    return factory


def get_backbone(name: str) -> BackboneSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise NotFound(
            f"unknown backbone {quote(name)}",
            hint=f"choose one of: {', '.join(sorted(_REGISTRY))} (see `strata layers`)",
        ) from None


def list_backbones() -> list[BackboneSpec]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]
