"""The fast extraction path (engine "auto": OpenVINO on a CPU when installed) against the
naive fp32 reference on real photos, engine ordering and caching, and the AddImages stream's
order with bad images in it."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import replace
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
    """fp32 OpenVINO gives eager's logits; the default precision (bf16 after the first
    layers where the CPU has native bf16) gives its classes and probabilities."""
    eager = load_backbone(get_backbone(DEFAULT_BACKBONE), CPU)  # library default: torch
    exact = load_backbone(fast.spec, CPU, options=replace(fast.engines.options, precision="fp32"))
    pre = fast.spec.preprocessing
    batch = to_batch([prepare_one(n, d, pre, 10**8).pixels for n, d in photos[:6]])
    eager_logits = extract(eager, batch, [], with_logits=True).logits
    exact_logits = extract(exact, batch, [], with_logits=True).logits
    fast_logits = extract(fast, batch, [], with_logits=True).logits
    assert fast_logits is not None and eager_logits is not None and exact_logits is not None
    np.testing.assert_allclose(exact_logits, eager_logits, atol=1e-3)
    assert (fast_logits.argmax(axis=1) == eager_logits.argmax(axis=1)).all()
    probabilities = [torch.softmax(torch.from_numpy(x), dim=1) for x in (fast_logits, eager_logits)]
    assert float((probabilities[0] - probabilities[1]).abs().max()) <= 0.02


@pytest.mark.skipif(not openvino_available(), reason="OpenVINO is not installed")
def test_graph_cut_after_a_layer_computes_what_the_whole_graph_does(fast: LoadedBackbone) -> None:
    """The two halves precision `auto` runs at fp32 and bf16, both compiled in fp32 here (so
    on any CPU), chain to the whole graph's outputs; a tap inside the first half leaves no
    clean cut."""
    from indexer.engine.openvino_engine import _openvino_core, import_openvino
    from indexer.engine.openvino_split import split_after

    ov, core = import_openvino(), _openvino_core()
    cut = fast.spec.fp32_through
    assert cut == "blocks.1"
    fast.engine(layers_of(fast), "avg")
    cache = fast.engines.options.resolved_cache_dir / "openvino"
    xml = next(x for x in cache.glob("*.xml") if len(core.read_model(str(x)).outputs) == 3)
    halves = split_after(ov, core, xml, cut)
    assert halves is not None
    fp32 = {"INFERENCE_PRECISION_HINT": "f32"}
    early, late = (core.compile_model(h, "CPU", fp32) for h in halves)
    whole = core.compile_model(core.read_model(str(xml)), "CPU", fp32)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    activation = early(pixels)[0]
    assert activation.shape == (3, 24, 56, 56)  # stage 1: stride 4, 24 channels
    chained, direct = late(activation), whole(pixels)
    for i in range(len(DEPTHS)):
        np.testing.assert_allclose(chained[i], direct[i], atol=1e-5)
    inside = load_backbone(fast.spec, CPU, options=fast.engines.options)
    inside.engine(["blocks.0", "blocks.4"], "avg")  # a tap before the cut
    two_taps = [x for x in cache.glob("*.xml") if len(core.read_model(str(x)).outputs) == 2]
    assert two_taps
    for candidate in two_taps:
        assert split_after(ov, core, candidate, cut) is None


@pytest.mark.skipif(not openvino_available(), reason="OpenVINO is not installed")
def test_auto_precision_holds_fp32_vectors_on_real_photos(
    fast: LoadedBackbone, photos: list[tuple[str, bytes]]
) -> None:
    """Precision `auto` on the CPU: bf16 after the backbone's first layers where the CPU
    computes bf16 natively, fp32 elsewhere; either way every vector within cosine 0.99 of
    fp32's, and the early taps exact."""
    from indexer.engine.openvino_engine import _openvino_core, native_bf16

    engine = fast.engine(layers_of(fast), "avg")
    if native_bf16(_openvino_core()):
        assert "fp32 through blocks.1, bf16 after" in engine.description
    else:
        assert "f32," in engine.description
    exact = load_backbone(fast.spec, CPU, options=replace(fast.engines.options, precision="fp32"))
    assert "f32," in exact.engine(layers_of(exact), "avg").description
    pre = fast.spec.preprocessing
    batch = to_batch([prepare_one(n, d, pre, 10**8).pixels for n, d in photos])
    got = extract(fast, batch, layers_of(fast)).vectors
    want = extract(exact, batch, layers_of(exact)).vectors
    for depth in DEPTHS:
        layer = fast.spec.layer_for(depth)
        cosines = np.sum(got[layer] * want[layer], axis=1)
        assert cosines.min() >= MIN_COSINE, (depth, float(cosines.min()))
    np.testing.assert_allclose(got["blocks.1"], want["blocks.1"], atol=1e-5)


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


def test_conversion_does_not_warn_about_tracing(fast: LoadedBackbone, tmp_path: Path) -> None:
    """A first start converts the graph; its log carries no TorchScript deprecation notice."""
    from indexer.engine.graph import TapGraph
    from indexer.engine.openvino_engine import _convert

    pre = fast.spec.preprocessing
    graph = TapGraph(fast.model, layers_of(fast)[:1], "avg", False, pre.mean, pre.std)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _convert(graph, pre.crop, tmp_path / "graph.xml")
    assert (tmp_path / "graph.xml").is_file() and (tmp_path / "graph.bin").is_file()
    notices = [str(w.message) for w in caught if "torch.jit" in str(w.message)]
    assert not notices, notices


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
