"""Where a layer looked: Grad-CAM heatmaps (Selvaraju et al. 2017) at one depth's tapped layer.

The target is either a label of the collection's stored linear probe at that depth, or an
ImageNet class through the backbone's own head. For a probe on average-pooled maps the
score is linear in the map up to the L2 normalisation, so Grad-CAM's channel weights are
the probe's (CAM, Zhou et al. 2016). Captum's LayerGradCam computes it on the eager PyTorch
module (the OpenVINO engine has no gradients) through the same tap graph that made the
stored vectors. A pooled tap (e.g. `global_pool`) is explained on the map that feeds it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from captum.attr import LayerGradCam
from PIL import Image

from indexer.backbones.wordnet import IMAGENET_CLASSES, hierarchy
from indexer.catalog.collections import CollectionInfo, get_collection
from indexer.catalog.context import Context
from indexer.core.errors import InvalidInput, NotFound, StrataError, quote
from indexer.core.vocabulary import check_request_size
from indexer.engine.extract import to_batch
from indexer.engine.graph import TapGraph
from indexer.engine.loader import LoadedBackbone
from indexer.imaging.prepare import PreparedImage
from indexer.store import label_repository
from indexer.store.label_repository import StoredProbe
from indexer.store.repository import DepthSpec

log = logging.getLogger(__name__)

#: Images per backward pass: gradients of the whole graph are kept until the pass ends.
EXPLAIN_BATCH = 8


@dataclass(frozen=True)
class Explanation:
    uri: str
    target: str  # "label:cat" or "imagenet:tabby"
    score: float  # probability of the target
    depth: str
    layer: str  # where the heatmap is taken
    heatmap: np.ndarray | None  # (rows, cols) float32 in 0..1 at that layer's resolution
    framed: bytes = b""  # PNG of the network's input, the base of an overlay
    error: StrataError | None = None


def explain(
    ctx: Context,
    collection_name: str,
    images: Sequence[tuple[str, bytes]],
    depth: str = "",
    label: str = "",
    imagenet_class: str = "",
) -> list[Explanation]:
    """One Grad-CAM heatmap per image; bad images fail alone."""
    if label and imagenet_class:
        raise InvalidInput(
            "give a probe label or an ImageNet class, not both",
            hint="--label explains a stored probe, --imagenet-class the backbone's head",
        )
    if not images:
        raise InvalidInput("nothing to explain", hint="give at least one image")
    check_request_size(len(images), ctx.settings.max_images_per_request)
    collection = get_collection(ctx, collection_name)
    backbone = ctx.backbones.get(collection.backbone)
    probe = _probe(ctx, collection, depth) if label else None
    spec = collection.depth(probe.depth) if probe else _depth(collection, depth)
    fixed_class = _imagenet_index(backbone, imagenet_class) if imagenet_class else None
    if probe is not None and label not in probe.classes:
        raise NotFound(
            f"the probe at depth {quote(probe.depth)} has no label {quote(label)}",
            hint=f"its labels are: {', '.join(probe.classes)}",
        )
    if probe is None:
        _check_imagenet_head(backbone)
    prepared = ctx.prepare_images(
        images, backbone, backbone.spec.preprocessing.framed(collection.framing)
    )
    good = [p for p in prepared if isinstance(p, PreparedImage)]
    maps: list[tuple[np.ndarray, str, float]] = []
    for start in range(0, len(good), EXPLAIN_BATCH):
        chunk = good[start : start + EXPLAIN_BATCH]
        maps += _grad_cam(backbone, collection, spec, chunk, probe, label, fixed_class)
    out: list[Explanation] = []
    results = iter(maps)
    for (uri, _), outcome in zip(images, prepared, strict=True):
        if isinstance(outcome, StrataError):
            out.append(Explanation(uri, "", 0.0, spec.name, spec.layer, None, error=outcome))
            continue
        heatmap, target, score = next(results)
        out.append(
            Explanation(uri, target, score, spec.name, spec.layer, heatmap, _png(outcome.pixels))
        )
    return out


def _grad_cam(
    backbone: LoadedBackbone,
    collection: CollectionInfo,
    spec: DepthSpec,
    chunk: Sequence[PreparedImage],
    probe: StoredProbe | None,
    label: str,
    fixed_class: int | None,
) -> list[tuple[np.ndarray, str, float]]:
    device = backbone.device
    pre = backbone.spec.preprocessing
    logits = probe is None
    graph = TapGraph(backbone.model, [spec.layer], collection.pooling, logits, pre.mean, pre.std)
    graph = graph.to(device).eval()
    head = _probe_head(probe, device) if probe is not None else None

    def scores(pixels: torch.Tensor) -> torch.Tensor:
        outputs = graph(pixels)
        return head(outputs[0]) if head is not None else outputs[-1]

    module = dict(backbone.model.named_modules())[spec.layer]
    # A pooled tap has no spatial map of its own: explain the map that feeds it.
    pooled = backbone.layer(spec.layer).stride is None
    pixels = to_batch([p.pixels for p in chunk]).to(device).float().requires_grad_(True)
    with backbone.lock, torch.enable_grad():
        with torch.no_grad():
            probabilities = torch.softmax(scores(pixels).float(), dim=1)
        if probe is not None:
            targets = [probe.classes.index(label)] * len(chunk)
        elif fixed_class is not None:
            targets = [fixed_class] * len(chunk)
        else:
            targets = probabilities.argmax(dim=1).tolist()
        cam = LayerGradCam(scores, module).attribute(
            pixels,
            target=targets,
            attribute_to_layer_input=pooled,
            relu_attributions=True,
        )
    if cam.dim() != 4:
        raise InvalidInput(
            f"depth {quote(spec.name)} ({spec.layer}) has no spatial map to explain",
            hint="explain a convolutional depth, e.g. edges, parts or semantics",
        )
    cam = cam.detach().float()[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp(min=1e-12).view(-1, 1, 1)
    heatmaps = (cam / peak).clamp(0, 1).cpu().numpy().astype(np.float32)
    names = probe.classes if probe is not None else backbone.spec.categories
    kind = "label" if probe is not None else "imagenet"
    return [
        (heatmaps[i], f"{kind}:{names[t]}", float(probabilities[i, t]))
        for i, t in enumerate(targets)
    ]


def _probe_head(probe: StoredProbe, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """The stored probe's logits as a torch function of the pooled unit vector."""

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(a, dtype=np.float32), device=device)

    weight, bias, mean, scale = (
        tensor(a) for a in (probe.weight, probe.bias, probe.mean, probe.scale)
    )
    return lambda v: ((v - mean) / scale) @ weight + bias


def _probe(ctx: Context, collection: CollectionInfo, depth: str) -> StoredProbe:
    """The probe stored at `depth`; without one, the most accurate stored probe."""
    name = collection.depth(depth).name if depth else ""
    with ctx.sessions() as session:
        return label_repository.best_probe(session, collection.id, collection.name, name)


def _depth(collection: CollectionInfo, depth: str) -> DepthSpec:
    """The named depth, or the collection's deepest (its last) one."""
    return collection.depth(depth) if depth else collection.depths[-1]


def _check_imagenet_head(backbone: LoadedBackbone) -> None:
    if len(backbone.spec.categories) != IMAGENET_CLASSES:
        raise InvalidInput(
            f"backbone {quote(backbone.spec.name)} has no ImageNet-1k head",
            hint="explain a probe label instead (--label)",
        )


def _imagenet_index(backbone: LoadedBackbone, name: str) -> int:
    """A class given by name (case-insensitive), WordNet id or index."""
    categories = backbone.spec.categories
    if name.isdigit() and int(name) < len(categories):
        return int(name)
    lowered = [c.lower() for c in categories]
    if name.lower() in lowered:
        return lowered.index(name.lower())
    if len(categories) == IMAGENET_CLASSES:
        for index, synset in enumerate(hierarchy().classes):
            if name in (synset.wnid, synset.name):
                return index
    raise NotFound(
        f"{quote(name)} is not an ImageNet class of backbone {quote(backbone.spec.name)}",
        hint="give a class name as `strata classify` prints it, a wnid (n02123045) or 0..999",
    )


def _png(pixels: np.ndarray | torch.Tensor) -> bytes:
    array = pixels.cpu().numpy() if isinstance(pixels, torch.Tensor) else pixels
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()
