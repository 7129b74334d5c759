"""What commands read from the command line and the disk: image paths, KEY=VALUE pairs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


class UsageError(Exception):
    """Bad command-line input found before any call to the server."""


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files as given; folders walked recursively for image files, in sorted order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"{raw}: no such file or folder")
    return found


def read_images(paths: Sequence[str]) -> list[tuple[str, bytes]]:
    return [(str(p), p.read_bytes()) for p in expand_paths(paths)]


def parse_pairs(values: Sequence[str]) -> Iterator[tuple[str, str]]:
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep:
            raise UsageError(f"--meta {value!r} is not KEY=VALUE")
        yield key, rest
