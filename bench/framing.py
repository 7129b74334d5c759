"""Framing's two resamplers side by side: PyTorch's antialiased uint8 kernels on the whole
image then the centre crop (what `prepare_pixels` runs below `TORCH_BELOW`), against
Pillow's resize of the crop window alone (what it ran before, and still runs above).

    python bench/framing.py                 # 288 mixed photos, 5 alternated rounds
    python bench/framing.py --images 96 --json

The photos are bench/ingest.py's (500x375, 1024x768 and 3000x2000 JPEGs in turn), decoded
as ingest decodes them (JPEG draft scaling, prepare.DRAFT_MARGIN). Each round frames every
photo once with each resampler, one thread, the order alternating; CPU ms a photo are the
medians over the rounds, by decoded size and over all photos. Both are checked against
torchvision's Resize + CenterCrop on the same decoded image (the ImageNet recipe the
baseline of bench/ingest.py runs). Results go to bench/out/framing.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import MIXED_SIZES, make_photos  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=288, help="photos (default 288)")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    parser.add_argument("--json", action="store_true", help="print only the JSON document")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()

    import torch
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize

    from indexer.backbones.registry import get_backbone
    from indexer.imaging import framing
    from indexer.imaging.decode import DecodedImage, decode_image
    from indexer.imaging.prepare import DRAFT_MARGIN

    torch.set_num_threads(1)  # one decode thread's cost, as bench/roofline.py counts it
    pre = get_backbone("efficientnet_lite0").preprocessing.framed("center-crop")
    decoded = [
        decode_image(data, name=name, max_pixels=10**9, min_side=round(DRAFT_MARGIN * pre.resize))
        for name, data in make_photos(args.images, sizes=MIXED_SIZES)
    ]

    def plain(image: DecodedImage) -> Any:
        return pre.for_image(image.width, image.height)

    resamplers: dict[str, Callable[[DecodedImage], np.ndarray]] = {
        "torch": lambda d: framing.prepare_pixels(d.source, pre, (d.width, d.height)),
        "pillow": lambda d: framing._resize_crop_window(d.image, plain(d)),
    }
    by_size: dict[str, list[DecodedImage]] = {}
    for image in decoded:
        by_size.setdefault(f"{image.image.width}x{image.image.height}", []).append(image)

    cpu_ms: dict[str, dict[str, list[float]]] = {k: {} for k in resamplers}
    for round_ in range(args.rounds):
        order = list(resamplers) if round_ % 2 == 0 else list(reversed(resamplers))
        for kind in order:
            for size, images in by_size.items():
                began = time.process_time()
                for image in images:
                    resamplers[kind](image)
                spent = (time.process_time() - began) * 1000 / len(images)
                cpu_ms[kind].setdefault(size, []).append(spent)

    resize = Resize(pre.resize, InterpolationMode(pre.interpolation))
    differences: dict[str, dict[str, float]] = {}
    for kind, resample in resamplers.items():
        deltas = [
            np.abs(
                resample(image).astype(np.int16)
                - np.asarray(CenterCrop(pre.crop)(resize(image.image))).astype(np.int16)
            )
            for image in decoded
        ]
        differences[kind] = {
            "max": int(max(d.max() for d in deltas)),
            "mean": round(float(np.mean([d.mean() for d in deltas])), 4),
        }

    counts = {size: len(images) for size, images in by_size.items()}
    document: dict[str, Any] = {"images": len(decoded), "rounds": args.rounds, "by_size": {}}
    for kind in resamplers:
        medians = {size: statistics.median(v) for size, v in cpu_ms[kind].items()}
        overall = sum(medians[s] * counts[s] for s in medians) / len(decoded)
        document[kind] = {
            "cpu_ms_per_photo": round(overall, 3),
            "grey_levels_from_torchvision": differences[kind],
        }
        for size, value in medians.items():
            document["by_size"].setdefault(size, {"photos": counts[size]})[kind] = round(value, 3)
    document["saved_cpu_ms_per_photo"] = round(
        document["pillow"]["cpu_ms_per_photo"] - document["torch"]["cpu_ms_per_photo"], 3
    )

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "framing.json").write_text(json.dumps(document, indent=2))
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    print(f"{len(decoded)} photos, {args.rounds} rounds; CPU ms a photo (one thread), median")
    print(f"{'decoded size':>14} {'photos':>7} {'torch':>8} {'pillow':>8}")
    for size, row in sorted(document["by_size"].items()):
        print(f"{size:>14} {row['photos']:>7} {row['torch']:>8.2f} {row['pillow']:>8.2f}")
    print(
        f"{'all':>14} {len(decoded):>7} {document['torch']['cpu_ms_per_photo']:>8.2f} "
        f"{document['pillow']['cpu_ms_per_photo']:>8.2f}"
        f"   saved {document['saved_cpu_ms_per_photo']:.2f} ms a photo"
    )
    for kind in resamplers:
        d = document[kind]["grey_levels_from_torchvision"]
        print(
            f"{kind}: grey levels from torchvision's Resize + CenterCrop: max {d['max']}, "
            f"mean {d['mean']}"
        )
    print(f"\nwritten to {args.out / 'framing.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
