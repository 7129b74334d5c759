"""What the bench scripts share: photo-like JPEGs made from scikit-image's photos, a free
port, and `strata serve` in a subprocess that is ready once health says SERVING."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: 500x375 (or 375x500 portrait): the size of a typical ImageNet validation photo.
PHOTO_SIZE = (500, 375)
#: What a folder of real photos holds: ImageNet-size, a downscaled export, a camera original.
MIXED_SIZES = ((500, 375), (1024, 768), (3000, 2000))


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """ "500x375,3000x2000" -> ((500, 375), (3000, 2000))."""
    sizes = []
    for part in text.split(","):
        width, _, height = part.strip().lower().partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise SystemExit(f"--sizes: {part!r} is not WIDTHxHEIGHT (e.g. 500x375)")
        sizes.append((int(width), int(height)))
    return tuple(sizes)


def source_photos() -> list[np.ndarray]:
    from skimage import data

    return [
        data.astronaut(),
        data.chelsea(),
        data.coffee(),
        data.rocket(),
        data.hubble_deep_field(),
        data.retina(),
        data.immunohistochemistry(),
        data.stereo_motorcycle()[0],
        data.stereo_motorcycle()[1],
    ]


def make_photos(
    count: int, seed: int = 0, sizes: tuple[tuple[int, int], ...] = (PHOTO_SIZE,)
) -> list[tuple[str, bytes]]:
    """`count` distinct JPEGs: a random crop (35-100% of the area, 4:3 or 3:4) of a source
    photo, resized to the next of `sizes` in turn (or its portrait twin), maybe mirrored,
    exposure x0.8-1.2, quality 90; (name, bytes) pairs.

    Photos larger than their source get sensor-like grain (Gaussian, sigma 4 levels): a
    smooth upscale would compress to a fraction of a real camera file and flatter every
    decoder (3000x2000 comes out near 2.3 MB, as a 6 Mpx camera JPEG does)."""
    from PIL import Image, ImageEnhance, ImageOps

    rng = np.random.default_rng(seed)
    sources = [Image.fromarray(a).convert("RGB") for a in source_photos()]
    photos = []
    for i in range(count):
        source = sources[i % len(sources)]
        portrait = bool(rng.random() < 0.3)
        aspect = 3 / 4 if portrait else 4 / 3
        width, height = source.size
        area = width * height * rng.uniform(0.35, 1.0)
        crop_w = min(width, round((area * aspect) ** 0.5))
        crop_h = min(height, round(crop_w / aspect))
        left = int(rng.integers(0, width - crop_w + 1))
        top = int(rng.integers(0, height - crop_h + 1))
        size = sizes[i % len(sizes)]
        target = size[::-1] if portrait else size
        photo = source.crop((left, top, left + crop_w, top + crop_h)).resize(
            target, Image.Resampling.LANCZOS
        )
        if target[0] * target[1] > crop_w * crop_h:
            pixels = np.asarray(photo, dtype=np.float32)
            pixels += rng.normal(0.0, 4.0, pixels.shape).astype(np.float32)
            photo = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        if rng.random() < 0.5:
            photo = ImageOps.mirror(photo)
        photo = ImageEnhance.Brightness(photo).enhance(float(rng.uniform(0.8, 1.2)))
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=90)
        photos.append((f"photo-{seed}-{i:04d}.jpg", buffer.getvalue()))
    return photos


def write_photos(
    folder: Path, count: int, seed: int = 0, sizes: tuple[tuple[int, int], ...] = (PHOTO_SIZE,)
) -> list[Path]:
    """`make_photos` written as files into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in make_photos(count, seed, sizes):
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def run_index(address: str, folder: Path, collection: str, streams: int = 2) -> tuple[dict, float]:
    """The `strata index` command itself, in this process, into an existing collection;
    its JSON document and the seconds it took."""
    import json

    from service.cli import main

    out = io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(out):
        command = ["index", str(folder), "--collection", collection, "--server", address]
        code = main([*command, "--streams", str(streams), "--json", "--quiet"])
    seconds = time.perf_counter() - began
    document = json.loads(out.getvalue())
    if code != 0:
        raise SystemExit(f"strata index failed ({code}): {document}")
    return dict(document), seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    address: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far, all threads."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def strata_server(
    data_dir: Path, env: dict[str, str], log_path: Path, extra_args: tuple[str, ...] = ()
) -> Iterator[Server]:
    """`strata serve` in a subprocess on a free port (STRATA_* variables of this shell left
    out, `env` added); yields it once health says SERVING, stops it after."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "service.cli", "serve", "--listen", address]
    command += ["--data", str(data_dir), *extra_args]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**clean, **env}, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"strata serve exited: {log_path.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"strata serve not ready: {log_path.read_text()[-3000:]}")
            with grpc.insecure_channel(address) as channel:
                try:
                    reply = health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
            time.sleep(0.3)
        yield Server(address, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass(frozen=True)
class CifarSplit:
    """The CIFAR collection of bench/probe.py by item position: uris are split/class/file."""

    classes: list[str]
    truth: np.ndarray  # (n,) class index of each item
    train: np.ndarray  # positions of the train images
    test: np.ndarray  # positions of the test images

    @classmethod
    def of(cls, uris: dict[int, str], ids: np.ndarray) -> CifarSplit:
        names = [uris[int(i)].split("/") for i in ids]
        classes = sorted({n[1] for n in names})
        return cls(
            classes,
            np.array([classes.index(n[1]) for n in names]),
            np.array([i for i, n in enumerate(names) if n[0] == "train"]),
            np.array([i for i, n in enumerate(names) if n[0] == "test"]),
        )

    def few(self, per_class: int, seed: int) -> np.ndarray:
        """`per_class` train positions of each class, drawn at random by `seed`."""
        rng = np.random.default_rng(seed)
        return np.concatenate(
            [
                rng.choice(self.train[self.truth[self.train] == k], per_class, replace=False)
                for k in range(len(self.classes))
            ]
        )
