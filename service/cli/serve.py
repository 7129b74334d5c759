"""`strata serve`: run the gRPC server until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    from indexer.core.errors import StrataError

    try:
        return _serve(args)
    except (StrataError, OSError) as exc:
        # A bad setting, an unwritable data folder, a port in use, TLS files that do not
        # match, a database URL that is not one: one clear line and exit status 2, not a
        # traceback (a driver's multi-line message joined onto it).
        line = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        print(f"strata serve: error: {line}", file=sys.stderr, flush=True)
        return 2


def _serve(args: argparse.Namespace) -> int:
    from service.logs import configure_logging
    from service.settings import ServiceSettings

    # Settings first: a bad value is reported before the server's imports (torch) load.
    settings = ServiceSettings.load(
        listen=args.listen,
        data_dir=Path(args.data) if args.data else None,
        database_url=args.database,
        device=args.device,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        tls_client_ca=Path(args.tls_client_ca) if args.tls_client_ca else None,
        read_tokens=tuple(args.read_token) if args.read_token else None,
        write_tokens=tuple(args.write_token) if args.write_token else None,
        metrics_listen=args.metrics_listen,
        log_format=args.log_format,
        warm_up=False if args.no_warm_up else None,
    )
    from service.tls import server_credentials

    server_credentials(settings)  # TLS files that cannot work, before loading anything
    from service.server import serve

    configure_logging(settings.log_format, logging.INFO)
    asyncio.run(serve(settings))
    return 0


def register(commands: argparse._SubParsersAction, client_options: argparse.ArgumentParser) -> None:
    serve = commands.add_parser("serve", help="run the gRPC server until SIGINT/SIGTERM")
    serve.add_argument("--listen", default=None, help="HOST:PORT (default 127.0.0.1:50051)")
    serve.add_argument("--data", default=None, help="data folder (default ./strata-data)")
    serve.add_argument("--database", default=None, help="SQLAlchemy URL (default SQLite in --data)")
    serve.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    serve.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve TLS")
    serve.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    serve.add_argument(
        "--tls-client-ca", default=None, help="PEM CA: clients need a certificate it signed"
    )
    serve.add_argument(
        "--read-token",
        action="append",
        help="repeatable; prefer STRATA_READ_TOKENS=a,b (flags show in `ps`)",
    )
    serve.add_argument(
        "--write-token",
        action="append",
        help="repeatable read-write token; prefer STRATA_WRITE_TOKENS",
    )
    serve.add_argument(
        "--metrics-listen",
        default=None,
        help="HOST:PORT to serve Prometheus metrics on (/metrics); default: none",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="log lines for people (text, default) or one JSON object per line (json)",
    )
    serve.add_argument(
        "--no-warm-up",
        action="store_true",
        help="say SERVING before the engines are built (STRATA_WARM_UP=0); the first "
        "request then pays for the model load",
    )
    serve.set_defaults(run=cmd_serve)
