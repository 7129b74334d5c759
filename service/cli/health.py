"""`strata health`: is a server ready? For scripts, container health checks and people
waiting on a server that is still warming up."""

from __future__ import annotations

import argparse
import time

from service.cli.output import emit
from service.client import StrataClient, StrataClientError

#: Seconds between checks while waiting.
POLL_INTERVAL_S = 0.5


def cmd_health(args: argparse.Namespace, client: StrataClient) -> int:
    """Exit 0 when SERVING; otherwise 1, with the last status (or the connection's error)."""
    deadline = time.monotonic() + args.wait
    while True:
        try:
            status, error = client.health(args.service), None
        except StrataClientError as exc:
            status, error = "UNREACHABLE", exc
        if status == "SERVING" or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL_S)
    if error is not None and status != "SERVING":
        raise error  # the usual error document: code, message, and the connection's hint
    document = {"server": client.target, "service": args.service, "status": status}
    what = f" ({args.service})" if args.service else ""
    emit(args, document, lambda: f"{client.target}{what}: {status}")
    return 0 if status == "SERVING" else 1


def register(commands: argparse._SubParsersAction, client_options: argparse.ArgumentParser) -> None:
    health = commands.add_parser(
        "health",
        parents=[client_options],
        help="is the server ready? exit 0 when SERVING",
        description="Ask the server's gRPC health service. Exit status 0 when it says SERVING, "
        "1 otherwise (starting up and warming its engines, shutting down, or a replica "
        "too far behind), with the status printed; no token needed.",
    )
    health.add_argument(
        "--service",
        default="",
        help="a service's full name (strata.v1.Strata, strata.v1.Labels, ...); default: the "
        "whole server",
    )
    health.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep asking until SERVING or SECONDS pass (e.g. after `strata serve &`)",
    )
    health.set_defaults(run=cmd_health)
