"""Grad-CAM cost per image at each preset depth, on this machine's device (library call, no
gRPC): `python bench/explain.py [IMAGES]` (default 16 scikit-image photos, 4 subjects)."""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from skimage import data

from indexer.catalog import collections
from indexer.catalog.context import Context
from indexer.core.settings import Settings
from indexer.insight.explain import explain


def jpeg(name: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(getattr(data, name)()).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    subjects = ("chelsea", "coffee", "astronaut", "rocket")
    images = [(f"{subjects[i % 4]}-{i}", jpeg(subjects[i % 4])) for i in range(count)]
    ctx = Context.open(Settings.load(env={}, data_dir=Path(tempfile.mkdtemp())))
    try:
        collections.create_collection(ctx, "bench")
        explain(ctx, "bench", images[:2])  # loads the model
        print(f"device {ctx.backbones.device}, {count} images")
        for depth in ("semantics", "parts", "edges"):
            start = time.perf_counter()
            explain(ctx, "bench", images, depth=depth)
            took = time.perf_counter() - start
            print(f"{depth:>9}: {took:6.2f} s, {took / count * 1000:5.0f} ms/image")
    finally:
        ctx.close()


if __name__ == "__main__":
    main()
