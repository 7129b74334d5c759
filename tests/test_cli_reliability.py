"""The CLI as a new user meets it: files skipped by suffix are listed with the reason (and
formats people expect to be images say "unsupported image format"), lists longer than one
call's limit are split over several calls by the client itself, `strata index` stopped by
Ctrl-C or by a server that went away reports what was stored, and text output never passes
control characters of stored text to the terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ServerHandle
from index_hooks import call_after_sending

from indexer.core.vocabulary import MAX_IMAGES_PER_REQUEST
from service.cli.main import main as strata
from service.client import ImageToAdd, StrataClient


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
    (folder / "gone.jpg").symlink_to(folder / "moved-away.jpg")  # was silently ignored
    os.mkfifo(folder / "pipe.jpg")  # reading it would wait forever
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
    assert set(skipped) == {
        *("drawing.svg", "print.eps", "phone.HEIC", "notes.txt", "gone.jpg", "pipe.jpg")
    }
    for name in ("drawing.svg", "print.eps", "phone.HEIC"):
        assert "unsupported image format" in skipped[name], skipped[name]
    assert "not an image file" in skipped["notes.txt"]
    assert "broken symbolic link" in skipped["gone.jpg"]
    assert "not a regular file" in skipped["pipe.jpg"]
    # Named on the command line, the FIFO is refused before anything is read or sent.
    code, document = run(
        capsys, "index", str(folder / "pipe.jpg"), "--collection", collection, "--json"
    )
    assert code == 2 and "not a regular file" in document["error"]["message"]


def test_text_output_escapes_control_characters_in_stored_text(
    server: ServerHandle,
    client: StrataClient,
    collection: str,
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    [(_, data)] = small_jpegs(1, seed=91)
    uri = "写真\u3000tab\there\nnew line\x1b[31mred"  # CJK and a wide space stay as they are
    [added] = client.add_images(collection, [ImageToAdd(uri, data)])
    assert added.status == "added"
    argv = ["--collection", collection, "--server", server.address]
    assert strata(["items", "list", *argv]) == 0
    listed = capsys.readouterr().out
    assert "\x1b" not in listed and "写真\u3000tab\\there\\nnew line\\x1b[31mred" in listed
    assert len(listed.strip().splitlines()) == 3  # header, the item, the count: one line each
    code, document = run(capsys, "items", "list", *argv, "--json")
    assert code == 0 and document["items"][0]["uri"] == uri  # --json keeps the text as stored


def test_items_help_lists_every_action(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        strata(["items", "--help"])
    usage = capsys.readouterr().out
    assert all(f"    {action} " in usage for action in ("get", "delete", "list")), usage


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


def _photo_folder(tmp_path: Path, small_jpegs: Callable[..., list[tuple[str, bytes]]]) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for uri, data in small_jpegs(96, seed=83):
        (folder / Path(uri).name).write_bytes(data)
    return folder


REPO_ROOT = Path(__file__).resolve().parent.parent
SIGINT_AFTER_FIVE = """
import os, signal, sys
from index_hooks import call_after_sending
from service.cli.main import main
call_after_sending(5, lambda: os.kill(os.getpid(), signal.SIGINT))
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_stops_sending_and_reports_exactly_what_was_stored(
    server: ServerHandle,
    client: StrataClient,
    collection: str,
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Ctrl-C: no more images go out, the answers to those sent are awaited, and the report
    counts what the server stored (it used to upload the whole folder, then print a
    traceback; on Python 3.11 an interrupted Thread.join also reported running streams as
    done, so the counts fell short of what was stored)."""
    folder = _photo_folder(tmp_path, small_jpegs)
    argv = ["index", str(folder), "--collection", collection, "--server", server.address]
    # A process of its own, as a user's: SIGINT once a stream has sent 5 images.
    done = subprocess.run(
        [sys.executable, "-c", SIGINT_AFTER_FIVE, *argv, "--json", "--quiet", "--streams", "2"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": f"{REPO_ROOT}:{REPO_ROOT / 'tests'}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "interrupted: waiting" in done.stderr
    document = json.loads(done.stdout)
    stopped = document["stopped"]
    assert stopped["code"] == "CANCELLED"
    stored = client.get_collection(collection).items
    assert document["added"] == stored and not document["failed"]
    assert stopped["not_answered"] == 96 - stored >= 30  # the first stream sent ~5 of its 48
    # The rerun sends the rest; what was stored reports unchanged.
    code, again = run(capsys, *argv, "--json", "--quiet")
    assert code == 0 and "stopped" not in again
    assert (again["unchanged"], again["added"]) == (stored, 96 - stored)


def test_a_server_gone_mid_index_is_reported_with_what_it_acknowledged(
    serve_process: Callable[..., Any],
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = _photo_folder(tmp_path, small_jpegs)
    server = serve_process()
    with server.client(timeout=60) as client:
        client.create_collection("gone")
    restore = call_after_sending(40, server.kill)
    argv = ["index", str(folder), "--collection", "gone", "--server", server.address]
    try:
        code = strata([*argv, "--quiet"])
    finally:
        restore()
    captured = capsys.readouterr()
    assert code == 1
    assert "stopped before the end (UNAVAILABLE" in captured.out
    assert "Run the same command again" in captured.out
    acknowledged = int(captured.out.split(",")[0].removeprefix("added "))
    server.start()
    with server.client(timeout=60) as client:
        assert client.get_collection("gone").items >= acknowledged  # none of them lost


def test_index_refused_as_a_whole_is_an_error_document_not_a_partial_report(
    server: ServerHandle,
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = _photo_folder(tmp_path, small_jpegs)
    argv = ["index", str(folder), "--collection", "no-such-collection", "--json", "--quiet"]
    code, document = run(capsys, *argv, "--server", server.address)
    assert code == 1 and set(document) == {"error"}, document
    assert document["error"]["code"] == "NOT_FOUND"


def test_a_stream_that_breaks_on_a_bug_raises_rather_than_reporting_success(
    server: ServerHandle,
    collection: str,
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = _photo_folder(tmp_path, small_jpegs)
    original = StrataClient.add_images

    def add_images(self: StrataClient, collection: str, images: Any) -> Any:
        results = original(self, collection, images)
        try:
            yield next(results)
            raise RuntimeError("a bug after the first result")
        finally:
            results.close()  # cancel the call here, not whenever the collector gets to it

    monkeypatch.setattr(StrataClient, "add_images", add_images)
    argv = ["index", str(folder), "--collection", collection, "--server", server.address]
    with pytest.raises(RuntimeError, match="a bug after the first result"):
        strata([*argv, "--json", "--quiet"])
