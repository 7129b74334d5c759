"""Ray ingest (`strata index --ray`) against single-server ingest (`strata index` into a
running server), same photos, same machine, same run.

    python bench/ray_ingest.py                      # 256 photos, 2 interleaved repeats
    python bench/ray_ingest.py --images 128 --repeats 1 --json

Photos: bench/common.py's (JPEGs of 500x375, as bench/ingest.py). Server: `strata serve`
subprocess on SQLite in a temporary folder (bench/common.py). Ray: a local Ray started in
this process on this machine's cores (what `--ray local` does), writing into the server's
own database file; its actors load the backbone once, so a warm-up run comes first, as the
server gets one. Reported: images/s of each (files in -> vectors committed; the server also
adds to FAISS), the Ray cold start (cluster + actors + the first run) separately, and the
min cosine between the two sides' stored vectors per depth (must be >= 0.999).
Results go to bench/out/ray_ingest.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import strata_server, write_photos  # noqa: E402  (bench/common.py)
from ingest import BACKBONE, DEPTHS, load, machine, strata_index  # noqa: E402  (bench/ingest.py)


def ray_index(database_url: str, address: str, folder: Path, collection: str) -> tuple[dict, float]:
    """Create the collection through the server, then run `strata index --ray` in this
    process (the Ray this process runs is used); its JSON document and seconds."""
    from service.cli import main
    from service.client import StrataClient

    with StrataClient(address) as client:
        client.create_collection(collection, BACKBONE, list(DEPTHS), framing="center-crop")
    stdout = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(stdout):
        command = ["index", str(folder), "--collection", collection]
        code = main([*command, "--ray", "local", "--database", database_url, "--json", "--quiet"])
    seconds = time.perf_counter() - started
    document = json.loads(stdout.getvalue())
    if code != 0:
        raise SystemExit(f"strata index --ray failed ({code}): {document}")
    return dict(document), seconds


def stored(database_url: str, collection: str) -> dict[str, dict[str, np.ndarray]]:
    from indexer.store import repository
    from indexer.store.database import create_database_engine, make_session_factory

    engine = create_database_engine(database_url)
    out: dict[str, dict[str, np.ndarray]] = {}
    with make_session_factory(engine)() as session:
        info = repository.get_collection(session, collection)
        for depth in info.depths:
            for ids, vectors in repository.iter_vectors(session, info.id, depth.name, depth.dim):
                for item_id, vector in zip(ids, vectors, strict=True):
                    out.setdefault(depth.name, {})[int(item_id)] = vector
        uris = {
            i.id: i.uri
            for i in repository.get_items(session, info.id, list(out[DEPTHS[0]])).values()
        }
    engine.dispose()
    return {depth: {uris[i]: v for i, v in by_id.items()} for depth, by_id in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs of each")
    parser.add_argument("--json", action="store_true", help="print only the JSON document")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print

    import ray

    env = {k: v for k, v in os.environ.items() if k.startswith("STRATA_")}
    with tempfile.TemporaryDirectory(prefix="strata-bench-ray-") as tmp:
        root = Path(tmp)
        photos, warm = root / "photos", root / "warmup"
        photos.mkdir()
        warm.mkdir()
        say(f"making {args.images} photos ...")
        paths = write_photos(photos, args.images)
        write_photos(warm, 64, seed=1)
        data_dir = root / "data"
        runs: list[dict[str, Any]] = []
        with strata_server(data_dir, env, root / "server.log") as server:
            database_url = f"sqlite:///{(data_dir / 'strata.db').resolve()}"
            say(f"server on {server.address}; warming up ...")
            strata_index(server.address, warm, "warmup")
            say("starting a local Ray on this machine's cores; Ray warm-up run ...")
            began = time.perf_counter()
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
            ray_index(database_url, server.address, warm, "ray-warmup")
            cold_s = time.perf_counter() - began
            for repeat in range(args.repeats):
                order = ("server", "ray") if repeat % 2 == 0 else ("ray", "server")
                for kind in order:
                    before = load()
                    name = f"{kind}{repeat}"
                    if kind == "server":
                        document, seconds = strata_index(server.address, photos, name)
                    else:
                        document, seconds = ray_index(database_url, server.address, photos, name)
                    if int(document["added"]) != len(paths):
                        raise SystemExit(f"{kind}: {document['added']} of {len(paths)} added")
                    runs.append(
                        {
                            "kind": kind,
                            "repeat": repeat,
                            "seconds": round(seconds, 2),
                            "images_per_s": round(len(paths) / seconds, 1),
                            "load_before": before,
                        }
                    )
                    say(f"  {kind:6s} repeat {repeat}: {runs[-1]['images_per_s']} images/s")
            ray.shutdown()
            a, b = stored(database_url, "server0"), stored(database_url, "ray0")
        cosines = {}
        for depth in DEPTHS:
            uris = sorted(a[depth])
            x = np.stack([a[depth][u] for u in uris])
            y = np.stack([b[depth][u] for u in uris])
            cosines[depth] = round(float((x * y).sum(1).min()), 5)

    def median(kind: str) -> float:
        return statistics.median(r["images_per_s"] for r in runs if r["kind"] == kind)

    result = {
        "machine": machine(),
        "images": len(paths),
        "runs": runs,
        "server_images_per_s": median("server"),
        "ray_images_per_s": median("ray"),
        "ray_over_server": round(median("ray") / median("server"), 3),
        "ray_cold_start_s": round(cold_s, 1),
        "min_cosine_ray_vs_server": cosines,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ray_ingest.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"server {result['server_images_per_s']} images/s, ray "
            f"{result['ray_images_per_s']} images/s ({result['ray_over_server']}x); ray cold "
            f"start {result['ray_cold_start_s']} s; min cosine {cosines}"
        )
    return 0 if min(cosines.values()) >= 0.999 else 1


if __name__ == "__main__":
    raise SystemExit(main())
