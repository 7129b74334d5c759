"""What commands read from the command line and the disk: image paths, KEY=VALUE pairs."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path

from indexer.core.vocabulary import DEFAULT_FOLDS

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})


class UsageError(Exception):
    """Bad command-line input found before any call to the server."""


#: Formats people expect to be images that Strata does not decode (vector, camera raw,
#: HEIF family, layered editors' files): reported by name instead of skipped in silence.
UNSUPPORTED_IMAGE_SUFFIXES = {
    **dict.fromkeys((".svg", ".svgz"), "SVG"),
    **dict.fromkeys((".eps", ".ps", ".ai"), "PostScript/EPS"),
    **dict.fromkeys((".heic", ".heif"), "HEIC/HEIF"),
    ".avif": "AVIF",
    ".jxl": "JPEG XL",
    ".jp2": "JPEG 2000",
    ".psd": "Photoshop",
    ".xcf": "GIMP",
    ".ico": "icon",
    ".pdf": "PDF",
    **dict.fromkeys(
        (".raw", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf", ".srw", ".pef"),
        "camera RAW",
    ),
}


def skip_reason(path: Path) -> str:
    """Why a file found in a folder is not sent."""
    kind = UNSUPPORTED_IMAGE_SUFFIXES.get(path.suffix.lower())
    if kind is not None:
        return f"unsupported image format ({kind}); convert it to JPEG, PNG or WebP to index it"
    return f"not an image file by its suffix ({path.suffix or 'none'})"


def scan_paths(paths: Sequence[str]) -> tuple[list[Path], list[dict[str, str]]]:
    """Image files (files as given; folders walked recursively, in sorted order) and the
    files of those folders that were skipped, each with the reason."""
    found: list[Path] = []
    skipped: list[dict[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                if not p.is_file():
                    continue
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    found.append(p)
                elif not p.name.startswith("."):  # .DS_Store and friends are no one's image
                    skipped.append({"uri": str(p), "reason": skip_reason(p)})
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"{raw}: no such file or folder")
    return found, skipped


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files as given; folders walked recursively for image files, in sorted order."""
    return scan_paths(paths)[0]


def read_images(paths: Sequence[str]) -> list[tuple[str, bytes]]:
    return [(str(p), p.read_bytes()) for p in expand_paths(paths)]


def parse_pairs(values: Sequence[str]) -> Iterator[tuple[str, str]]:
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep:
            raise UsageError(f"--meta {value!r} is not KEY=VALUE")
        yield key, rest


def cross_validation_options() -> argparse.ArgumentParser:
    """--folds and --seed, shared by every command that cross-validates."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--folds",
        type=int,
        default=DEFAULT_FOLDS,
        help=f"stratified k-fold (default {DEFAULT_FOLDS})",
    )
    options.add_argument("--seed", type=int, default=0)
    return options
