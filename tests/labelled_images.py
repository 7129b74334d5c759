"""Small labelled image sets of real photos for the label, probe and bootstrap tests.

- `crop_set(per_class)`: random crops of scikit-image photos, one photo per class, so the
  classes are real pictures yet separable; [(uri, jpeg bytes, label)].
- `cifar_set(classes, per_class)`: CIFAR-10 training images from the shared zip, or None
  when the zip is missing (tests then skip with CIFAR_MISSING).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
from photos import jpeg, photo
from PIL import Image

CIFAR_ZIP = Path(os.environ.get("STRATA_CIFAR_ZIP", "/work/shared/datasets/cifar10-small.zip"))
CIFAR_MISSING = f"{CIFAR_ZIP} is not on this machine (shared datasets are dev/CI only)"

#: class -> scikit-image photo; distinct subjects, each large enough for varied crops.
CROP_CLASSES = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket"}
CROP_SIZE = 128

Example = tuple[str, bytes, str]


def crop(label: str, seed: int) -> Image.Image:
    """A random crop (45-85% of the short side, anywhere, maybe mirrored) of the class's
    photo, resized to CROP_SIZE."""
    rng = np.random.default_rng(seed)
    source = photo(CROP_CLASSES[label])
    side = int(min(source.size) * rng.uniform(0.45, 0.85))
    left = int(rng.integers(0, source.size[0] - side + 1))
    top = int(rng.integers(0, source.size[1] - side + 1))
    image = source.crop((left, top, left + side, top + side)).resize((CROP_SIZE, CROP_SIZE))
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


#: Distinct photos: no two show the same scene.
DISTINCT_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "colorwheel")


def distinct_photos(size: int = 200) -> list[tuple[str, Image.Image]]:
    return [(name, photo(name).resize((size, size))) for name in DISTINCT_PHOTOS]


def crop_set(per_class: int, seed: int = 0, prefix: str = "crops") -> list[Example]:
    out = []
    for c, label in enumerate(CROP_CLASSES):
        for i in range(per_class):
            image = crop(label, seed * 100_003 + c * 1009 + i)
            out.append((f"{prefix}/{label}/{i:03d}.jpg", jpeg(image), label))
    return out


def cifar_set(classes: tuple[str, ...], per_class: int) -> list[Example] | None:
    """The first `per_class` training images of each class, sorted by name."""
    if not CIFAR_ZIP.exists():
        return None
    with zipfile.ZipFile(CIFAR_ZIP) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        out = []
        for label in classes:
            mine = [n for n in names if n.startswith(f"train/{label}/")][:per_class]
            out.extend((n, archive.read(n), label) for n in mine)
    return out
