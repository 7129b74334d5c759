"""Server credentials from settings: TLS, or mutual TLS when a client CA is given."""

from __future__ import annotations

import grpc

from indexer.core.settings import SettingsError
from service.settings import ServiceSettings


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """None when TLS is off; with `tls_client_ca`, clients must show a certificate it signed."""
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    try:
        chain = settings.tls_cert.read_bytes()
        key = settings.tls_key.read_bytes()
        client_ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    except OSError as exc:
        raise SettingsError(
            f"cannot read a TLS file: {exc}", hint="check --tls-cert, --tls-key, --tls-client-ca"
        ) from exc
    for name, pem in (("tls_cert", chain), ("tls_key", key), ("tls_client_ca", client_ca)):
        if pem is not None and b"-----BEGIN " not in pem:
            raise SettingsError(f"setting {name} is not a PEM file", hint="give PEM-encoded files")
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )
