"""Backbones: the registry of pretrained CNNs as data (architecture, weights, preprocessing,
depth presets). Importing this package registers every family.

- `registry.get_backbone` / `list_backbones`; `spec.BackboneSpec`, `LayerInfo`.
- `layers.layer_table`, `layers.resolve_layer`: the tappable layers and depth names.
- `weights.resolve_weights_file`: where a backbone's weights are on disk (never random).
"""

from indexer.backbones import efficientnet_lite, torchvision_family

__all__ = ["efficientnet_lite", "torchvision_family"]
