"""Atheris (libFuzzer) harness over `indexer.imaging.decode.decode_image`, the door every untrusted
image comes through.

A finding is any exception other than `InvalidImage`, a crash in a C decoder, a hang
(-timeout) or a memory blow-up; an accepted image must come out RGB and within the pixel limit.
Memory is judged per input: the harness caps its own address space (ADDRESS_SPACE), so an
input whose decode would need more raises MemoryError and libFuzzer saves that very input as
a crash. libFuzzer's own RSS check is off by default (-rss_limit_mb=0; a flag given on the
command line wins): it samples peak RSS once a second and saves whichever input happens to be
running, and that peak includes the parent's, which a process keeps through exec (pytest's,
with models loaded, failed CI runs on the empty input).
Pillow's allowed plugins and the decoder module are instrumented so coverage guides the
mutations.

    python fuzz/fuzz_decode.py --make-seeds fuzz/corpus      # small seed images, every format
    python fuzz/fuzz_decode.py -max_total_time=600 fuzz/corpus   # libFuzzer flags, corpus dirs
    bash fuzz/run.sh [SECONDS]                               # both, for a longer run
"""

from __future__ import annotations

import io
import resource
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["PIL", "indexer"]):
    # Pillow loads plugins lazily; import the allowed ones here so they are instrumented.
    from PIL import (
        BmpImagePlugin,  # noqa: F401
        GifImagePlugin,  # noqa: F401
        Image,
        JpegImagePlugin,  # noqa: F401
        MpoImagePlugin,  # noqa: F401
        PngImagePlugin,  # noqa: F401
        TiffImagePlugin,  # noqa: F401
        WebPImagePlugin,  # noqa: F401
    )

    from indexer.core.errors import InvalidImage
    from indexer.imaging.decode import decode_image

MAX_PIXELS = 4_000_000
#: The harness's whole address space, ~160 MB of it taken before the first input. An accepted
#: image of MAX_PIXELS needs tens of MB at its widest mode, so a decode that hits this cap is
#: a finding.
ADDRESS_SPACE = 2 << 30


def test_one_input(data: bytes) -> None:
    # Odd lengths also exercise the reduced-scale JPEG path.
    min_side = 64 if len(data) % 2 else None
    try:
        decoded = decode_image(data, name="fuzz-input", max_pixels=MAX_PIXELS, min_side=min_side)
    except InvalidImage:
        return
    image = decoded.image
    if image.mode != "RGB":
        raise AssertionError(f"decoded to mode {image.mode}, not RGB")
    if decoded.width * decoded.height > MAX_PIXELS or image.width * image.height > MAX_PIXELS:
        raise AssertionError(f"{decoded.width}x{decoded.height} passed the pixel limit")


def seed_images() -> dict[str, bytes]:
    """Tiny images in every allowed format and the odd modes the decoder converts."""
    base = Image.new("RGB", (24, 16))
    base.putdata(
        [(x * 10 % 256, y * 15 % 256, (x * y) % 256) for y in range(16) for x in range(24)]
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    variants = {
        "rgb.jpg": (base, "JPEG", {"quality": 80}),
        "exif.jpg": (base, "JPEG", {"exif": exif.tobytes()}),
        "progressive.jpg": (base, "JPEG", {"progressive": True}),
        "cmyk.jpg": (base.convert("CMYK"), "JPEG", {}),
        "grey.jpg": (base.convert("L"), "JPEG", {}),
        "rgba.png": (base.convert("RGBA"), "PNG", {}),
        "palette.png": (base.convert("P"), "PNG", {"transparency": 0}),
        "la.png": (base.convert("LA"), "PNG", {}),
        "bilevel.png": (base.convert("1"), "PNG", {}),
        "i16.png": (base.convert("I;16"), "PNG", {}),
        "anim.gif": (
            base.convert("P"),
            "GIF",
            {"save_all": True, "append_images": [base.convert("P")]},
        ),
        "rgb.bmp": (base, "BMP", {}),
        "rgb.tiff": (base, "TIFF", {"compression": "tiff_lzw"}),
        "float.tiff": (base.convert("F"), "TIFF", {}),
        "lossy.webp": (base, "WEBP", {"quality": 50}),
        "lossless.webp": (base.convert("RGBA"), "WEBP", {"lossless": True}),
    }
    out = {}
    for name, (image, fmt, params) in variants.items():
        buffer = io.BytesIO()
        image.save(buffer, fmt, **params)
        out[name] = buffer.getvalue()
    return out


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[1] == "--make-seeds":
        folder = Path(argv[2])
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seed_images().items():
            (folder / name).write_bytes(data)
        print(f"wrote {len(seed_images())} seed images to {folder}")
        return
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    # Before the caller's flags: libFuzzer takes the last value of a flag.
    atheris.Setup([argv[0], "-rss_limit_mb=0", *argv[1:]], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
