"""`strata index PATH...`: add image files and folders to a collection, with a progress bar."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm import tqdm

from service.cli.index_report import report_index
from service.cli.inputs import UsageError, checked_metadata, scan_paths
from service.client import ImageToAdd, StrataClient, StrataClientError

#: The exit status of a process stopped by Ctrl-C (128 + SIGINT), as shells report it.
SIGINT_STATUS = 130
#: Statuses of a run cut short rather than refused (the server gone, a timeout, a full disk):
#: reported with what was acknowledged and a rerun hint, even when nothing was yet.
BROKEN = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "CANCELLED", "RESOURCE_EXHAUSTED"}
    | {"INTERNAL", "UNKNOWN"}
)
#: Upload streams of `strata index` (bench/README: ingest, streams).
DEFAULT_INDEX_STREAMS = 2


def cmd_index(args: argparse.Namespace, client: StrataClient) -> int:
    metadata = checked_metadata(args.meta or [])
    paths, skipped = scan_paths(args.paths)
    if args.ray:  # on a Ray cluster, straight into the database; no server involved
        from service.cli.ray_index import cmd_index_ray

        return cmd_index_ray(args, paths, skipped, metadata)
    if args.database:
        raise UsageError("--database goes with --ray (without it, the server writes)")
    if args.streams < 1:
        raise UsageError(f"--streams must be at least 1, got {args.streams}")
    failed: list[dict[str, str]] = []
    counts = {"added": 0, "replaced": 0, "unchanged": 0}
    lock = threading.Lock()  # counts, failed, errors and the bar, shared by the streams
    stop = threading.Event()  # Ctrl-C or a stream's error: send no more images
    errors: list[StrataClientError] = []
    crashes: list[Exception] = []
    answered = [0]  # results the server sent, failures included

    def images(share: Sequence[Path]) -> Iterator[ImageToAdd]:
        for path in share:
            if stop.is_set():
                return  # the server answers what it has, then the stream ends
            try:
                data = path.read_bytes()
            except OSError as exc:
                with lock:
                    failed.append({"uri": str(path), "error": f"cannot read: {exc.strerror}"})
                continue
            labels = [path.parent.name] if args.labels_from_folders and path.parent.name else []
            yield ImageToAdd(str(path), data, labels, metadata, tags=args.tags)

    def stream(share: Sequence[Path], bar: tqdm, finished: threading.Event) -> None:
        try:
            for result in client.add_images(args.collection, images(share)):
                with lock:
                    answered[0] += 1
                    if result.status == "failed":
                        reason = result.error.message + (
                            f" ({result.error.code})" if result.error.code else ""
                        )
                        failed.append({"uri": result.uri, "error": reason})
                    else:
                        counts[result.status] = counts.get(result.status, 0) + 1
                    bar.update(1)
        except StrataClientError as exc:  # the server gone, the collection deleted...
            stop.set()
            with lock:
                errors.append(exc)
        except Exception as exc:  # a bug: raised again in the main thread, never a report
            stop.set()
            with lock:
                crashes.append(exc)
        finally:
            finished.set()

    # Several streams keep a server's pipeline full: one stream's batch decodes while
    # another's runs forward or commits. Files are dealt out in turn, so each stream gets
    # a like mix of sizes. Daemon threads: a second Ctrl-C leaves without waiting for them.
    shares = [share for i in range(args.streams) if (share := paths[i :: args.streams])]
    interrupted = False
    with tqdm(
        total=len(paths), unit="img", desc="indexing", file=sys.stderr, disable=args.quiet
    ) as bar:
        streams = [threading.Event() for _ in shares]
        for share, finished in zip(shares, streams, strict=True):
            threading.Thread(
                target=stream, args=(share, bar, finished), name="index-stream", daemon=True
            ).start()
        try:
            _wait(streams)
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
            print(
                "\nstrata: interrupted: waiting for the server's answers to the images already "
                "sent (Ctrl-C again to quit without them)",
                file=sys.stderr,
            )
            with contextlib.suppress(KeyboardInterrupt):  # report the counts so far
                _wait(streams)
        if crashes:
            raise crashes[0]
        if errors and not interrupted and not answered[0] and errors[0].code not in BROKEN:
            raise errors[0]  # refused as a whole (unknown collection, token...): as any command
        if not (interrupted or errors):
            bar.update(len(paths) - bar.n)
    if not (interrupted or errors):
        return report_index(args, counts, failed, skipped)
    with lock:  # threads may still run after a second Ctrl-C: report a snapshot
        stopped = (
            {"code": "CANCELLED", "message": "interrupted (Ctrl-C)", "hint": ""}
            if interrupted
            else {"code": errors[0].code, "message": errors[0].message, "hint": errors[0].hint}
        )
        report_index(args, dict(counts), list(failed), skipped, stopped, total=len(paths))
    return SIGINT_STATUS if interrupted else 1


def _wait(streams: Sequence[threading.Event]) -> None:
    """Wait until every stream has finished, in short waits, so that Ctrl-C reaches this
    thread at once. Events, not Thread.join: on Python 3.11 a join that Ctrl-C interrupts
    can leave a running thread reported as finished (is_alive() False)."""
    for finished in streams:
        while not finished.wait(0.2):
            pass


def register(commands: argparse._SubParsersAction, client_options: argparse.ArgumentParser) -> None:
    index = commands.add_parser("index", parents=[client_options], help="add image files/folders")
    index.add_argument("paths", nargs="+", metavar="PATH")
    index.add_argument("--collection", required=True)
    index.add_argument(
        "--labels-from-folders", action="store_true", help="label each image with its folder's name"
    )
    index.add_argument(
        "--tags",
        action="store_true",
        help="store the ImageNet top-1 WordNet tags as metadata (search with --meta tag.dog=1)",
    )
    index.add_argument(
        "--meta",
        action="append",
        metavar="KEY=VALUE",
        help="metadata for every image added (repeatable; a key given twice keeps the last "
        "value); images already stored keep theirs; filter later with --meta KEY=VALUE",
    )
    index.add_argument("--quiet", action="store_true", help="no progress bar")
    index.add_argument(
        "--streams",
        type=int,
        default=DEFAULT_INDEX_STREAMS,
        metavar="N",
        help=f"concurrent upload streams (default {DEFAULT_INDEX_STREAMS}): more keep a "
        "server's decode and forward pass busy at once",
    )
    ray = index.add_argument_group("distributed ingest (pip install 'strata[ray]')")
    ray.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="embed on this Ray cluster ('local': start one on this machine's cores) and "
        "write straight into --database",
    )
    ray.add_argument(
        "--database", metavar="URL", default=None, help="the collection's database (with --ray)"
    )
    ray.add_argument(
        "--ray-actors",
        type=int,
        default=0,
        metavar="N",
        help="embedding actors (default: one per GPU, else one per 4 CPUs)",
    )
    ray.add_argument("--device", default=None, help="actors' device: auto, cpu, cuda (with --ray)")
    index.set_defaults(run=cmd_index)
