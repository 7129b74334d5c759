"""Builds the `strata` parser from the command groups and runs one command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from service.cli import (
    backbones,
    collections,
    health,
    index,
    insight,
    items,
    labels,
    maps,
    probe,
    query,
    serve,
    thumbnails,
    web,
)
from service.cli.inputs import UsageError, tls_files
from service.client import StrataClient, StrataClientError, default_server

#: Command groups, each registering its parsers next to its handlers.
GROUPS = (
    serve,
    health,
    backbones,
    collections,
    index,
    query,
    items,
    probe,
    labels,
    insight,
    web,
    thumbnails,
    maps,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strata",
        description="Layered ImageNet CNN embeddings: similarity search, probes, labels.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    client_options = argparse.ArgumentParser(add_help=False)
    client_options.add_argument(
        "--server", default=None, help=f"HOST:PORT (env STRATA_SERVER, default {default_server()})"
    )
    client_options.add_argument("--json", action="store_true", help="print one JSON document")
    client_options.add_argument("--timeout", type=float, default=None, help="seconds per call")
    client_options.add_argument("--token", default=None, help="bearer token (env STRATA_TOKEN)")
    client_options.add_argument(
        "--ca", default=None, help="PEM CA that signed the server's certificate: use TLS"
    )
    client_options.add_argument(
        "--cert",
        default=None,
        help="PEM client certificate, with --key (mutual TLS; without --ca the system's "
        "trusted roots check the server)",
    )
    client_options.add_argument("--key", default=None, help="PEM key of --cert (mutual TLS)")

    for group in GROUPS:
        group.register(commands, client_options)
    return parser


#: The exit status of a process a closed pipe stopped (128 + SIGPIPE), as shells report it.
SIGPIPE_STATUS = 141


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.run is serve.cmd_serve:
        return serve.cmd_serve(args)
    if args.run is web.cmd_web:  # makes its own clients, one per browser token
        return web.cmd_web(args)
    try:
        with StrataClient(
            args.server,
            timeout=args.timeout,
            token=args.token or os.environ.get("STRATA_TOKEN") or None,
            **tls_files(args),
        ) as client:
            return int(args.run(args, client))
    except KeyboardInterrupt:  # Ctrl-C: no traceback (strata index reports what was stored)
        print("\nstrata: interrupted", file=sys.stderr)
        return index.SIGINT_STATUS
    except BrokenPipeError:
        # The reader went away (`strata ... --json | head`): stop quietly, as `cat` would.
        # stdout goes to /dev/null so that the interpreter's last flush does not fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return SIGPIPE_STATUS
    except (StrataClientError, UsageError, OSError) as exc:
        if isinstance(exc, StrataClientError):
            code, message = exc.code, exc.details
        elif isinstance(exc, UsageError):
            code, message = "USAGE", str(exc)
        else:
            code, message = "OS_ERROR", str(exc)
        if args.json:
            print(json.dumps({"error": {"code": code, "message": message}}))
        print(f"strata: error: {code}: {message}", file=sys.stderr)
        return 2 if code == "USAGE" else 1
