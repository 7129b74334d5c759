"""ImageNet-1k class names, index-aligned with every registered classifier head."""

from __future__ import annotations

from torchvision.models._meta import _IMAGENET_CATEGORIES

IMAGENET_CATEGORIES: tuple[str, ...] = tuple(_IMAGENET_CATEGORIES)
