"""Server credentials from settings: TLS, or mutual TLS when a client CA is given."""

from __future__ import annotations

import ssl
from pathlib import Path

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
    _check_key_matches(settings.tls_cert, settings.tls_key)
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _check_key_matches(cert: Path, key: Path) -> None:
    """gRPC reports a key that does not belong to the certificate as "Failed to bind";
    OpenSSL, asked first, says what is wrong."""

    def no_password() -> str:
        raise SettingsError(f"setting tls_key: {key} is encrypted", hint="give an unencrypted key")

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=no_password)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise SettingsError(
                f"the TLS private key {key} does not match the certificate {cert}",
                hint="give the key the certificate was issued for (--tls-key)",
            ) from None
        raise SettingsError(
            f"the TLS certificate {cert} or key {key} cannot be used: {exc}",
            hint="check both are PEM files of one key pair",
        ) from None
