"""What the web app needs to know: which gRPC server, how to reach it, its own limits."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_LISTEN = "127.0.0.1:8080"
#: Largest upload (one image per request) the app accepts before it reaches gRPC; the
#: client's message limit is 64 MiB, so this stays well below it.
DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024 * 1024
#: Seconds per gRPC call; probes and label predictions on large collections take minutes.
DEFAULT_TIMEOUT = 600.0


@dataclass(frozen=True)
class WebSettings:
    server: str
    token: str | None = None  # used when the browser has not given one
    root_certificates: bytes | None = None  # PEM CA: talk TLS to the gRPC server
    private_key: bytes | None = None  # mTLS
    certificate_chain: bytes | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    timeout: float = DEFAULT_TIMEOUT
    #: Host names the app answers to (the Host header, without its port); None: any. On a
    #: loopback address only loopback names, so a web page whose name was rebound to
    #: 127.0.0.1 (DNS rebinding) cannot read or drive the app.
    allowed_hosts: frozenset[str] | None = None


def split_listen(listen: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); ValueError says what is wrong."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--listen {listen!r}: use HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


#: The names a browser on this machine uses for a loopback address.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def allowed_hosts(listen_host: str, extra: Iterable[str]) -> frozenset[str] | None:
    """Loopback: its names and `extra`; any other address: `extra`, or any name when none."""
    names = frozenset(name.strip("[]").lower() for name in extra)
    if is_loopback(listen_host):
        return LOOPBACK_NAMES | {listen_host.lower()} | names
    return names or None


def host_name(host_header: str) -> str:
    """'Example.org:8080' -> 'example.org'; '[::1]:8080' -> '::1'."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host
