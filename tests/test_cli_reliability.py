"""The CLI as a new user meets it: files skipped by suffix are listed with the reason (and
formats people expect to be images say "unsupported image format"), and lists longer than
one call's limit are split over several calls by the client itself."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ServerHandle

from indexer.core.vocabulary import MAX_IMAGES_PER_REQUEST
from service.cli.main import main as strata
from service.client import StrataClient


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = strata(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_index_lists_skipped_files_and_names_unsupported_image_formats(
    server: ServerHandle,
    collection: str,
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for uri, data in small_jpegs(2, seed=71):
        (folder / Path(uri).name).write_bytes(data)
    (folder / "drawing.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (folder / "print.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n")
    (folder / "phone.HEIC").write_bytes(b"\0\0\0\x18ftypheic")
    (folder / "notes.txt").write_text("not a picture")
    code, document = run(
        capsys,
        "index",
        str(folder),
        "--collection",
        collection,
        "--server",
        server.address,
        "--json",
        "--quiet",
    )
    assert code == 0, document
    assert document["added"] == 2
    skipped = {Path(s["uri"]).name: s["reason"] for s in document["skipped"]}
    assert set(skipped) == {"drawing.svg", "print.eps", "phone.HEIC", "notes.txt"}
    for name in ("drawing.svg", "print.eps", "phone.HEIC"):
        assert "unsupported image format" in skipped[name], skipped[name]
    assert "not an image file" in skipped["notes.txt"]


@pytest.mark.slow
def test_long_lists_are_split_over_several_calls(
    client: StrataClient, collection: str, small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    count = MAX_IMAGES_PER_REQUEST + 4  # just over one call's limit, as `classify` of 338 was
    images = small_jpegs(count, seed=72, sides=(32, 40))
    predictions = client.classify(images, k=1)
    assert [p.uri for p in predictions] == [u for u, _ in images]
    assert all(p.top for p in predictions)
    embeddings = client.embed(images, depths=["semantics"])
    assert len(embeddings) == count
    dim = client.get_collection(collection).depths[-1].dim
    rng = np.random.default_rng(0)
    vectors = [rng.standard_normal(dim).astype(np.float32).tolist() for _ in range(count)]
    results = client.search(collection, vectors, depths=["semantics"], k=1)
    assert len(results) == count
