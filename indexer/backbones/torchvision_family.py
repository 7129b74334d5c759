"""The classic ImageNet CNNs from torchvision, with torchvision's own weights enums.

Weights are never downloaded: they are read from torchvision's cache ($TORCH_HOME/hub/
checkpoints, where `torchvision` itself would have put them), from STRATA_WEIGHTS_DIR, or
from an explicit file. Preprocessing comes from the weights enum's transforms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from urllib.parse import urlparse

from torch import nn
from torchvision import models
from torchvision.models import WeightsEnum

from indexer.backbones.registry import register
from indexer.backbones.spec import BackboneSpec, WeightsSource
from indexer.backbones.weights import files_named, load_strict
from indexer.imaging.framing import Preprocessing


def _spec(
    name: str,
    description: str,
    builder: Callable[..., nn.Module],
    weights: WeightsEnum,
    presets: Mapping[str, str],
    **builder_kwargs: object,
) -> BackboneSpec:
    transforms = weights.transforms()
    filename = PurePosixPath(urlparse(weights.url).path).name
    return BackboneSpec(
        name=name,
        description=f"{description} (torchvision {weights}), ImageNet-1k",
        architecture=lambda: builder(weights=None, **builder_kwargs),
        weights=WeightsSource(
            filename=filename,
            candidates=files_named(filename),
            install_hint=(
                f"copy {filename} (published at {weights.url}) into "
                "$TORCH_HOME/hub/checkpoints (default ~/.cache/torch/hub/checkpoints) "
                "or into $STRATA_WEIGHTS_DIR"
            ),
            load=load_strict,
        ),
        preprocessing=Preprocessing(
            resize=int(transforms.resize_size[0]),
            crop=int(transforms.crop_size[0]),
            mean=tuple(transforms.mean),
            std=tuple(transforms.std),
            interpolation=transforms.interpolation.value,
        ),
        presets=presets,
        categories=tuple(weights.meta["categories"]),
    )


register(
    lambda: _spec(
        "alexnet",
        "AlexNet",
        models.alexnet,
        models.AlexNet_Weights.IMAGENET1K_V1,
        # relu after conv1 (stride 4), relu after conv4 (stride 16), fc7 after relu.
        {"edges": "features.1", "parts": "features.9", "semantics": "classifier.5"},
    )
)
register(
    lambda: _spec(
        "vgg16",
        "VGG-16",
        models.vgg16,
        models.VGG16_Weights.IMAGENET1K_V1,
        # relu3_3 (stride 4), relu5_3 (stride 16), fc7 after relu.
        {"edges": "features.15", "parts": "features.29", "semantics": "classifier.4"},
    )
)
register(
    lambda: _spec(
        "resnet50",
        "ResNet-50",
        models.resnet50,
        models.ResNet50_Weights.IMAGENET1K_V2,
        {"edges": "layer1", "parts": "layer3", "semantics": "avgpool"},
    )
)
register(
    lambda: _spec(
        "inception_v3",
        "Inception-v3",
        models.inception_v3,
        models.Inception_V3_Weights.IMAGENET1K_V1,
        {"edges": "Conv2d_4a_3x3", "parts": "Mixed_6e", "semantics": "avgpool"},
        # The published checkpoint carries the auxiliary head and expects input rescaling.
        aux_logits=True,
        transform_input=True,
        init_weights=False,
    )
)
register(
    lambda: _spec(
        "mobilenet_v3_large",
        "MobileNetV3-Large",
        models.mobilenet_v3_large,
        models.MobileNet_V3_Large_Weights.IMAGENET1K_V2,
        # stride-4 block, stride-16 block, the 1,280-d hardswish before the logits.
        {"edges": "features.3", "parts": "features.12", "semantics": "classifier.1"},
    )
)
