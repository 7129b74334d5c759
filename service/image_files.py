"""Which files are images to send: one rule for the CLI's folders and the web app's uploads,
so both skip the same files and say the same thing about them."""

from __future__ import annotations

from pathlib import PurePath

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})

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

#: The reasons' wording, with {kind} / {suffix} to fill: the web app fills them in the
#: browser (service/web/static/js/add.js), the CLI here.
UNSUPPORTED_REASON = (
    "unsupported image format ({kind}); convert it to JPEG, PNG or WebP to index it"
)
NOT_AN_IMAGE_REASON = "not an image file by its suffix ({suffix})"


def is_image_file(path: PurePath) -> bool:
    """By its suffix alone, in any case (.JPG too); the server's decoder has the last word."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def skip_reason(path: PurePath) -> str:
    """Why a file found in a folder is not sent."""
    kind = UNSUPPORTED_IMAGE_SUFFIXES.get(path.suffix.lower())
    if kind is not None:
        return UNSUPPORTED_REASON.format(kind=kind)
    return NOT_AN_IMAGE_REASON.format(suffix=path.suffix or "none")
