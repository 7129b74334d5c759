"""What the README and docs/ tell a new user holds: every setting the server reads is in the
README's configuration table, the README's Python example runs against a real server, and
the dotted names the docs point at exist."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import re
from pathlib import Path

import image_samples as samples
import pytest
from conftest import ServerHandle
from photos import distorted, photo, photo_jpeg

from service.client import StrataClientError
from service.settings import ServiceSettings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = {path.name: path.read_text() for path in sorted((ROOT / "docs").glob("*.md"))}


def section(markdown: str, heading: str) -> str:
    start = markdown.index(f"\n## {heading}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end >= 0 else None]


@pytest.mark.database_free
def test_every_setting_is_in_the_configuration_table() -> None:
    table = section(README, "Configuration")
    variables = [f"STRATA_{f.name.upper()}" for f in dataclasses.fields(ServiceSettings)]
    variables += ["STRATA_WEIGHTS_DIR", "STRATA_SERVER", "STRATA_TOKEN"]  # read elsewhere
    missing = [name for name in variables if f"`{name}`" not in table]
    assert not missing, f"README.md's Configuration does not name {missing}"


def test_the_readme_python_example_runs(
    server: ServerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (block,) = re.findall(r"```python\n(.*?)```", section(README, "The Python client"), re.S)
    for folder, name in (("cat", "chelsea"), ("cup", "coffee"), ("rocket", "rocket")):
        (tmp_path / "photos" / folder).mkdir(parents=True)
        (tmp_path / "photos" / folder / f"{name}.jpg").write_bytes(photo_jpeg(name))
    (tmp_path / "photos" / "cat" / "broken.jpg").write_bytes(samples.truncated_jpeg())
    (tmp_path / "query-cat.jpg").write_bytes(distorted(photo("chelsea")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRATA_SERVER", server.address)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(block, "README.md", "exec"), {})
    finally:
        with server.client(timeout=60) as client, contextlib.suppress(StrataClientError):
            client.delete_collection("pets")
    broken, semantics = printed.getvalue().splitlines()
    assert broken.startswith("photos/cat/broken.jpg ") and "truncated" in broken
    assert semantics.startswith("semantics [('photos/cat/chelsea.jpg', ")


#: First parts of dotted names that mean a module of the library or the service.
PACKAGES = ("indexer", "service")
SUBPACKAGES = ("core", "imaging", "backbones", "engine", "store", "catalog", "learning")


def resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    if parts[0] in SUBPACKAGES:
        parts = ["indexer", *parts]
    for split in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


@pytest.mark.database_free
def test_dotted_names_in_the_docs_exist() -> None:
    names = {
        (document, name)
        for document, text in {"README.md": README, **DOCS}.items()
        for name in re.findall(r"`([a-z_]+(?:\.[A-Za-z_]+)+)`", text)
        if name.split(".")[0] in PACKAGES + SUBPACKAGES
    }
    assert len(names) > 20  # the docs do point into the code
    missing = sorted(f"{document}: {name}" for document, name in names if not resolves(name))
    assert not missing, missing
