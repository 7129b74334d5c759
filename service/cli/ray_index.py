"""`strata index PATH... --ray ADDRESS --database URL`: the same command, run on a Ray
cluster straight into the collection's database (indexer.distributed.ray_ingest) instead of
through a server. Prints what `strata index` prints."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from indexer.core.errors import StrataError
from service.cli.index_report import report_index
from service.cli.inputs import UsageError
from service.client import StrataClientError
from service.errors import details, status_for


def cmd_index_ray(
    args: argparse.Namespace,
    paths: list[Path],
    skipped: list[dict[str, str]],
    metadata: dict[str, str],
) -> int:
    from indexer.core.settings import Settings
    from indexer.distributed import ray_ingest

    settings = Settings.load(database_url=args.database, device=args.device)
    if not settings.database_url:
        raise UsageError(
            "--ray writes straight into the collection's database: give --database URL "
            "(the URL its servers use, e.g. postgresql+psycopg://host/db) or STRATA_DATABASE_URL"
        )
    files = [
        ray_ingest.FileToIndex(
            str(path),
            path,
            [path.parent.name] if args.labels_from_folders and path.parent.name else [],
        )
        for path in paths
    ]
    try:
        ray_ingest.require_ray()  # importing Ray Data sets up its loggers: quieten them after
    except StrataError as exc:
        raise StrataClientError(status_for(exc).name, details(exc)) from exc
    # Ray's own INFO lines would bury the bar; its warnings and errors still show (but the
    # one that says its own bars are off: this command draws one, counted in commits).
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    options = ray_ingest.RayIngestOptions(actors=args.ray_actors, tags=args.tags, metadata=metadata)
    with tqdm(
        total=len(files), unit="img", desc="indexing", file=sys.stderr, disable=args.quiet
    ) as bar:

        def moved(progress: ray_ingest.Progress) -> None:
            bar.update(progress.done - bar.n)

        try:
            progress = ray_ingest.ingest(
                settings, args.collection, files, args.ray, options, on_progress=moved
            )
        except StrataError as exc:
            raise StrataClientError(status_for(exc).name, details(exc)) from exc
    failed = [
        {
            "uri": f.uri,
            # The server's words for a bad image: its message and status name.
            "error": f.message
            if f.error is None
            else f.error.message + f" ({status_for(f.error).name})",
        }
        for f in progress.failures
    ]
    counts = {
        "added": progress.added,
        "replaced": progress.replaced,
        "unchanged": progress.unchanged,
    }
    return report_index(args, counts, failed, skipped)
