"""`strata web`: the browser app (service/web) on uvicorn, a gRPC client of --server."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from service.cli.inputs import UsageError, tls_files
from service.client import default_server


def cmd_web(args: argparse.Namespace) -> int:
    import uvicorn

    from service.web.app import create_app
    from service.web.config import (
        DEFAULT_TIMEOUT,
        WebSettings,
        allowed_hosts,
        is_loopback,
        split_listen,
    )

    try:
        host, port = split_listen(args.listen)
        tls = tls_files(args)
    except (ValueError, UsageError) as exc:
        print(f"strata: error: USAGE: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"strata: error: OS_ERROR: {exc}", file=sys.stderr)
        return 1
    if args.max_upload_mb <= 0:
        print("strata: error: USAGE: --max-upload-mb must be positive", file=sys.stderr)
        return 2
    settings = WebSettings(
        server=args.server or default_server(),
        token=args.token or os.environ.get("STRATA_TOKEN") or None,
        **tls,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        timeout=args.timeout or DEFAULT_TIMEOUT,
        allowed_hosts=allowed_hosts(host, args.allowed_host),
    )
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not is_loopback(host):
        logging.getLogger("strata.web").warning(
            "listening on %s: anyone who can reach this address can use the app with the "
            "server's permissions; keep it on 127.0.0.1 or put TLS and a token in front",
            host,
        )
    if bool(args.listen_cert) != bool(args.listen_key):
        print("strata: error: USAGE: give both --listen-cert and --listen-key", file=sys.stderr)
        return 2
    scheme = "https" if args.listen_cert else "http"
    print(f"strata web: {scheme}://{host}:{port}/ (gRPC server {settings.server})", flush=True)
    # Behind a TLS proxy on this machine, uvicorn trusts its X-Forwarded-Proto (proxy
    # headers from 127.0.0.1), so cookies get the Secure flag there too.
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=args.listen_cert,
        ssl_keyfile=args.listen_key,
    )
    return 0


def register(commands: argparse._SubParsersAction, client_options: argparse.ArgumentParser) -> None:
    web = commands.add_parser(
        "web",
        parents=[client_options],
        help="browser app: search by depth, map, probes, label workbench",
    )
    web.add_argument(
        "--listen", default="127.0.0.1:8080", help="HOST:PORT to serve on (default 127.0.0.1:8080)"
    )
    web.add_argument(
        "--max-upload-mb", type=float, default=32.0, help="largest image upload (default 32)"
    )
    web.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name browsers use to reach the app (repeatable). On a loopback --listen "
        "only 127.0.0.1, localhost and these are answered (no DNS rebinding); on other "
        "addresses, any name unless some are given",
    )
    web.add_argument("--listen-cert", default=None, help="PEM certificate: serve the app over TLS")
    web.add_argument("--listen-key", default=None, help="PEM private key of --listen-cert")
    web.set_defaults(run=cmd_web)
