"""What commands read from the command line and the disk: image paths, KEY=VALUE pairs."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from indexer.core.errors import InvalidInput
from indexer.core.validation import check_metadata
from indexer.core.vocabulary import DEFAULT_FOLDS
from service.image_files import is_image_file, skip_reason


class UsageError(Exception):
    """Bad command-line input found before any call to the server."""


def tls_files(args: argparse.Namespace) -> dict[str, bytes | None]:
    """--ca, --cert and --key read for StrataClient's keyword arguments. A client
    certificate without its key (or the reverse) is refused here: gRPC would abort."""
    if bool(args.cert) != bool(args.key):
        raise UsageError("--cert and --key go together (the client certificate and its key)")

    def pem(path: str | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    return {
        "root_certificates": pem(args.ca),
        "private_key": pem(args.key),
        "certificate_chain": pem(args.cert),
    }


def scan_paths(paths: Sequence[str]) -> tuple[list[Path], list[dict[str, str]]]:
    """Image files (files as given; folders walked recursively, in sorted order) and the
    files of those folders that were skipped, each with the reason."""
    found: list[Path] = []
    skipped: list[dict[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_dir():
                    continue
                if p.is_file() and is_image_file(p):
                    found.append(p)
                elif p.name.startswith("."):  # .DS_Store and friends are no one's image
                    continue
                elif not p.is_file():  # a broken link, or a FIFO (reading it would hang)
                    skipped.append({"uri": str(p), "reason": not_a_file_reason(p)})
                else:
                    skipped.append({"uri": str(p), "reason": skip_reason(p)})
        elif path.is_file():
            found.append(path)
        elif path.exists() or path.is_symlink():
            raise UsageError(f"{raw}: {not_a_file_reason(path)}")
        else:
            raise UsageError(f"{raw}: no such file or folder")
    return found, skipped


def not_a_file_reason(path: Path) -> str:
    """Why a path that is neither a folder nor a regular file is not read."""
    if path.is_symlink() and not path.exists():
        return f"a broken symbolic link (to {os.readlink(path)})"
    return "not a regular file (a FIFO, socket or device)"


def expand_paths(paths: Sequence[str]) -> list[Path]:
    """Files as given; folders walked recursively for image files, in sorted order."""
    return scan_paths(paths)[0]


def read_images(paths: Sequence[str]) -> list[tuple[str, bytes]]:
    return [(str(p), p.read_bytes()) for p in expand_paths(paths)]


def parse_pairs(values: Sequence[str]) -> Iterator[tuple[str, str]]:
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--meta {value!r} is not KEY=VALUE")
        yield key, rest


def checked_metadata(values: Sequence[str]) -> dict[str, str]:
    """--meta KEY=VALUE pairs to store, held to the server's limits before any upload (a
    bad pair would otherwise fail every image, one by one)."""
    metadata = dict(parse_pairs(values))
    try:
        return check_metadata(metadata, "--meta")
    except InvalidInput as exc:
        raise UsageError(f"{exc} ({exc.hint})" if exc.hint else str(exc)) from exc


def at_least(flag: str, value: int, least: int, what: str) -> int:
    """A number typed on the command line, checked before any call: the server reads 0 as
    "the default" (proto3 cannot tell 0 from unset), so a typed 0 would silently be one."""
    if value < least:
        raise UsageError(f"{flag} must be at least {least} ({what}), got {value}")
    return value


def checked_folds(args: argparse.Namespace) -> int:
    what = f"the cross-validation folds; default {DEFAULT_FOLDS}"
    return at_least("--folds", args.folds, 2, what)


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
