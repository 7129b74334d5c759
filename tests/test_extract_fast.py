"""The fast extraction path (engine "auto": OpenVINO on a CPU when installed) against the
naive fp32 reference on real photos, engine ordering and caching, and the AddImages stream's
order with bad images in it."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ServerHandle
from photos import colour_photos, grey_photos, jpeg
from PIL import Image
from torchvision import transforms as T

from indexer.backbones.registry import get_backbone
from indexer.backbones.weights import resolve_weights_file
from indexer.core.settings import Settings, SettingsError
from indexer.core.vocabulary import DEFAULT_BACKBONE
from indexer.engine.extract import extract, to_batch
from indexer.engine.loader import LoadedBackbone, load_backbone
from indexer.engine.openvino_engine import openvino_available
from indexer.engine.options import EngineSettingError, RuntimeOptions
from indexer.imaging.prepare import prepare_one
from service.client import ImageToAdd

CPU = torch.device("cpu")
DEPTHS = ("edges", "parts", "semantics")
MIN_COSINE = 0.99


def imagenet_size(image: Image.Image) -> Image.Image:
    """Photos as they come in ImageNet: about 500x375 (portrait when taller than wide)."""
    size = (375, 500) if image.height > image.width else (500, 375)
    return image.resize(size, Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def photos() -> list[tuple[str, bytes]]:
    """Every skimage photo, colour and grey, as a ~500x375 JPEG and at its own size."""
    pictures = {**colour_photos(), **grey_photos()}
    out = [(f"{name}-500.jpg", jpeg(imagenet_size(p))) for name, p in pictures.items()]
    out += [(f"{name}.jpg", jpeg(p)) for name, p in list(pictures.items())[::3]]
    return out


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> LoadedBackbone:
    """Lite0 with the engine the service picks by default, converting into a fresh cache."""
    options = RuntimeOptions(engine="auto", cache_dir=tmp_path_factory.mktemp("engines"))
    return load_backbone(get_backbone(DEFAULT_BACKBONE), CPU, options=options)


def layers_of(backbone: LoadedBackbone) -> list[str]:
    return [backbone.spec.layer_for(d) for d in DEPTHS]


def naive_reference(photos: list[tuple[str, bytes]]) -> dict[str, np.ndarray]:
    """The textbook pipeline: full Pillow decode, torchvision transforms, eager fp32 NCHW
    forward with hooks; depth -> (N, C) unit vectors."""
    spec = get_backbone(DEFAULT_BACKBONE)
    model = spec.architecture()
    spec.weights.load(model, resolve_weights_file(spec, None))
    model.eval()
    pre = spec.preprocessing
    transform = T.Compose(
        [
            T.Resize(pre.resize, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(pre.crop),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )
    batch = torch.stack(
        [transform(Image.open(io.BytesIO(data)).convert("RGB")) for _, data in photos]
    )
    modules = dict(model.named_modules())
    captured: dict[str, torch.Tensor] = {}
    handles = [
        modules[spec.layer_for(d)].register_forward_hook(
            lambda _m, _i, out, d=d: captured.__setitem__(d, out)
        )
        for d in DEPTHS
    ]
    try:
        with torch.inference_mode():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return {
        d: F.normalize(t.mean(dim=(2, 3)) if t.dim() == 4 else t, dim=1).numpy()
        for d, t in captured.items()
    }


def test_service_default_picks_openvino_on_cpu(fast: LoadedBackbone) -> None:
    engine = fast.engine(layers_of(fast), "avg")
    expected = "openvino" if openvino_available() else "torch"
    assert engine.name == expected, engine.description
    assert Settings.load(env={}).engine == "auto"


def test_fast_path_matches_naive_fp32_on_real_photos(
    fast: LoadedBackbone, photos: list[tuple[str, bytes]]
) -> None:
    pre = fast.spec.preprocessing
    batch = to_batch([prepare_one(name, data, pre, 10**8).pixels for name, data in photos])
    features = extract(fast, batch, layers_of(fast))
    reference = naive_reference(photos)
    for depth in DEPTHS:
        got = features.vectors[fast.spec.layer_for(depth)]
        assert got.shape == reference[depth].shape
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
        cosines = np.sum(got * reference[depth], axis=1)
        worst = int(np.argmin(cosines))
        assert cosines[worst] >= MIN_COSINE, (depth, photos[worst][0], float(cosines[worst]))


def test_fast_engine_keeps_rows_in_order_at_any_batch_size(
    fast: LoadedBackbone, photos: list[tuple[str, bytes]]
) -> None:
    """Batches are split into sub-batches that run in parallel (small ones evenly over the
    streams), and a single image runs on OpenVINO's latency request: rows must come back in
    input order, equal to the single images', whatever the size (below, at and across the
    sub-batch size)."""
    pre = fast.spec.preprocessing
    pixels = [prepare_one(n, d, pre, 10**8).pixels for n, d in photos][:19]
    layers = layers_of(fast)
    singles = {
        layer: np.concatenate([extract(fast, to_batch([p]), layers).vectors[layer] for p in pixels])
        for layer in layers
    }
    for size in (2, 3, 4, 7, 8, 9, 16, 19):
        together = extract(fast, to_batch(pixels[:size]), layers)
        for layer in layers:
            np.testing.assert_allclose(together.vectors[layer], singles[layer][:size], atol=2e-5)


def test_fast_engine_logits_match_eager(
    fast: LoadedBackbone, photos: list[tuple[str, bytes]]
) -> None:
    eager = load_backbone(get_backbone(DEFAULT_BACKBONE), CPU)  # library default: torch
    pre = fast.spec.preprocessing
    batch = to_batch([prepare_one(n, d, pre, 10**8).pixels for n, d in photos[:6]])
    fast_logits = extract(fast, batch, [], with_logits=True).logits
    eager_logits = extract(eager, batch, [], with_logits=True).logits
    assert fast_logits is not None and eager_logits is not None
    assert (fast_logits.argmax(axis=1) == eager_logits.argmax(axis=1)).all()
    np.testing.assert_allclose(fast_logits, eager_logits, atol=1e-3)


@pytest.mark.skipif(not openvino_available(), reason="OpenVINO is not installed")
def test_converted_graph_is_cached_on_disk(
    fast: LoadedBackbone, photos: list[tuple[str, bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    layers = layers_of(fast)
    fast.engine(layers, "avg")  # converted (or already there) by the module fixture
    cache = fast.engines.options.resolved_cache_dir / "openvino"
    saved = {p: p.stat().st_mtime_ns for p in cache.glob("*.xml")}
    assert saved, f"nothing cached in {cache}"
    again = load_backbone(fast.spec, CPU, options=fast.engines.options)
    pre = fast.spec.preprocessing
    batch = to_batch([prepare_one(n, d, pre, 10**8).pixels for n, d in photos[:3]])
    with caplog.at_level(logging.INFO, logger="indexer.engine"):
        reloaded = extract(again, batch, layers)
    assert not [r for r in caplog.records if "converting" in r.getMessage()]
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*.xml")} == saved
    first = extract(fast, batch, layers)
    for layer in layers:
        np.testing.assert_array_equal(reloaded.vectors[layer], first.vectors[layer])


def test_engine_and_precision_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="engine 'fast' is not one of"):
        Settings.load(env={"STRATA_ENGINE": "fast"})
    with pytest.raises(SettingsError, match="precision 'int4'"):
        Settings.load(env={}, precision="int4")
    assert Settings.load(env={"STRATA_MODEL_CACHE_DIR": str(tmp_path)}).model_cache_dir == tmp_path
    with pytest.raises(EngineSettingError, match="unknown engine"):
        RuntimeOptions(engine="onnx").validate()


@pytest.mark.gpu
def test_cuda_autocast_stays_close_to_cpu_fp32(photos: list[tuple[str, bytes]]) -> None:
    spec = get_backbone(DEFAULT_BACKBONE)
    cpu = load_backbone(spec, CPU)
    gpu = load_backbone(spec, torch.device("cuda"), options=RuntimeOptions(engine="auto"))
    assert gpu.engine(layers_of(gpu), "avg").description.endswith("float16")
    batch = to_batch([prepare_one(n, d, spec.preprocessing, 10**8).pixels for n, d in photos])
    want = extract(cpu, batch, layers_of(cpu)).vectors
    got = extract(gpu, batch, layers_of(gpu)).vectors
    for layer, vectors in want.items():
        assert np.sum(vectors * got[layer], axis=1).min() >= MIN_COSINE, layer


def test_stream_keeps_order_and_bad_images_fail_alone(
    make_server: Callable[..., ServerHandle], photos: list[tuple[str, bytes]]
) -> None:
    """Batches of 4 on the server: good and bad images interleaved across several batches
    come back one result per image, in order; each bad one names itself."""
    server = make_server(batch_size=4)
    good = photos[:9]
    bad = {
        "truncated.jpg": good[0][1][: len(good[0][1]) // 3],
        "not-an-image.jpg": b"hello, I am text",
        "empty.jpg": b"",
    }
    stream: list[tuple[str, bytes]] = []
    bad_items = iter(bad.items())
    for position, item in enumerate(good):
        stream.append(item)
        if position % 3 == 1:
            stream.append(next(bad_items))
    with server.client(timeout=300) as client:
        client.create_collection("order")
        results = list(client.add_images("order", [ImageToAdd(u, d) for u, d in stream]))
        assert [r.uri for r in results] == [u for u, _ in stream]
        for (uri, _), result in zip(stream, results, strict=True):
            if uri in bad:
                assert result.status == "failed", uri
                assert uri in result.error.message
            else:
                assert result.status == "added", (uri, result.error.message)
        ids = {r.uri: r.id for r in results if r.status == "added"}
        assert len(set(ids.values())) == len(good)
        # Each stored item is its own nearest neighbour at every depth: right vectors, right ids.
        hits = client.search("order", list(ids.values()), depths=list(DEPTHS), k=1)
        for item_id, query in zip(ids.values(), hits, strict=True):
            for depth_hits in query.results:
                assert depth_hits.hits[0].id == item_id, (depth_hits.depth, item_id)
