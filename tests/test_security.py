"""Access control and operational safety: TLS, mutual TLS, bearer tokens (read-only and
read-write), deadlines, the cap on concurrent requests and graceful shutdown on SIGTERM.

Certificates are made here with `cryptography`: a CA, a server certificate for 127.0.0.1 and
localhost, a client certificate, and a second "rogue" CA whose certificates must not work."""

from __future__ import annotations

import datetime
import ipaddress
import json
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from conftest import ServeProcess, ServerHandle
from grpc_health.v1 import health_pb2, health_pb2_grpc
from helpers import settled

from indexer.core.settings import SettingsError
from service import auth, cli
from service.client import ImageToAdd, StrataClientError
from service.generated.strata.v1 import labels_pb2
from service.generated.strata.v1 import strata_pb2 as pb
from service.settings import ServiceSettings

crypto = pytest.importorskip("cryptography", reason="cryptography makes the test certificates")

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

READ_TOKEN = "reader-0123456789"
WRITE_TOKEN = "writer-0123456789"


# -- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        cert, key = folder / f"{name}.crt", folder / f"{name}.key"
        cert.write_bytes(self.cert)
        key.write_bytes(self.key)
        return cert, key


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class Authority:
    """A CA and the certificates it signed."""

    ca: Pem
    server: Pem
    client: Pem


def make_authority(name: str) -> Authority:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue(f"{name} CA", ca_key, None, ca=True)
    server_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    issuer = (f"{name} CA", ca_key)
    return Authority(
        ca=Pem(ca_cert, _key_pem(ca_key)),
        server=Pem(_issue("127.0.0.1", server_key, issuer, server=True), _key_pem(server_key)),
        client=Pem(_issue(f"{name} client", client_key, issuer), _key_pem(client_key)),
    )


@pytest.fixture(scope="module")
def authorities() -> tuple[Authority, Authority]:
    """(the real CA, a rogue CA) with their server and client certificates."""
    return make_authority("strata-test"), make_authority("rogue")


def refused(call: Callable[[], object]) -> StrataClientError:
    with pytest.raises(StrataClientError) as caught:
        call()
    return caught.value


# -- TLS and mutual TLS ---------------------------------------------------------------------


def test_tls_serves_only_clients_that_trust_its_ca(
    make_server: Callable[..., ServerHandle],
    authorities: tuple[Authority, Authority],
    tmp_path: Path,
) -> None:
    good, rogue = authorities
    cert, key = good.server.write(tmp_path, "server")
    handle = make_server(tls_cert=cert, tls_key=key)
    with handle.client(timeout=10, root_certificates=good.ca.cert) as client:
        assert client.list_collections() == []
    with handle.client(timeout=5) as plaintext:
        error = refused(plaintext.list_collections)
        assert error.code == "UNAVAILABLE" and "pass --ca" in error.hint  # the likely cause
    with handle.client(timeout=5, root_certificates=rogue.ca.cert) as wrong_ca:
        assert refused(wrong_ca.list_collections).code == "UNAVAILABLE"


def test_mutual_tls_needs_a_client_certificate_from_the_client_ca(
    make_server: Callable[..., ServerHandle],
    authorities: tuple[Authority, Authority],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good, rogue = authorities
    cert, key = good.server.write(tmp_path, "server")
    client_ca = tmp_path / "client-ca.crt"
    client_ca.write_bytes(good.ca.cert)
    handle = make_server(tls_cert=cert, tls_key=key, tls_client_ca=client_ca)
    trusted = {"timeout": 5, "root_certificates": good.ca.cert}
    with handle.client(
        **trusted, private_key=good.client.key, certificate_chain=good.client.cert
    ) as client:
        assert client.list_collections() == []
    with handle.client(**trusted) as anonymous:
        assert refused(anonymous.list_collections).code == "UNAVAILABLE"
    with handle.client(
        **trusted, private_key=rogue.client.key, certificate_chain=rogue.client.cert
    ) as impostor:
        assert refused(impostor.list_collections).code == "UNAVAILABLE"

    # The CLI's --ca/--cert/--key flags.
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(good.ca.cert)
    client_cert, client_key = good.client.write(tmp_path, "client")
    common = ["collections", "list", "--server", handle.address, "--json", "--ca", str(ca_file)]
    assert cli.main([*common, "--cert", str(client_cert), "--key", str(client_key)]) == 0
    assert json.loads(capsys.readouterr().out) == {"collections": []}
    assert cli.main(common) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "UNAVAILABLE"
    # A certificate without its key: gRPC would abort the process; a usage error instead.
    assert cli.main([*common, "--cert", str(client_cert)]) == 2
    assert "--cert and --key go together" in json.loads(capsys.readouterr().out)["error"]["message"]
    with pytest.raises(ValueError, match="go together"):
        handle.client(**trusted, certificate_chain=good.client.cert)
    # A client certificate alone turns TLS on (the system's roots check the server, and do
    # not trust this test's CA): never plaintext with the certificate dropped.
    with handle.client(
        timeout=5, private_key=good.client.key, certificate_chain=good.client.cert
    ) as system_roots:
        assert system_roots.tls
        assert refused(system_roots.list_collections).code == "UNAVAILABLE"


def test_default_listen_address_is_loopback_only() -> None:
    assert ServiceSettings.load(env={}).listen.startswith("127.0.0.1:")


def test_tls_settings_fail_loudly(tmp_path: Path) -> None:
    cert = tmp_path / "server.crt"
    cert.write_text("x")
    with pytest.raises(SettingsError, match="both"):
        ServiceSettings.load(env={}, tls_cert=cert)
    with pytest.raises(SettingsError, match="not a readable file"):
        ServiceSettings.load(env={}, tls_cert=cert, tls_key=tmp_path / "missing.key")
    with pytest.raises(SettingsError, match="needs the server's own certificate"):
        ServiceSettings.load(env={}, tls_client_ca=cert)


# -- bearer tokens ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(make_server: Callable[..., ServerHandle]) -> ServerHandle:
    return make_server(read_tokens=(READ_TOKEN,), write_tokens=(WRITE_TOKEN,))


def test_tokens_from_the_environment_are_comma_separated() -> None:
    settings = ServiceSettings.load(env={"STRATA_READ_TOKENS": "a, b,", "STRATA_WRITE_TOKENS": "w"})
    assert settings.read_tokens == ("a", "b") and settings.write_tokens == ("w",)


def test_calls_without_a_valid_token_are_unauthenticated(token_server: ServerHandle) -> None:
    for token in (None, "not-a-token", READ_TOKEN + "x"):
        with token_server.client(timeout=10, token=token) as client:
            error = refused(client.list_collections)
            assert error.code == "UNAUTHENTICATED", (token, error)
            assert "bearer token" in error.details
            error = refused(lambda c=client: list(c.add_images("x", [ImageToAdd("a", b"a")])))  # type: ignore[misc]
            assert error.code == "UNAUTHENTICATED", (token, error)
    # A token under another scheme is no bearer token.
    with grpc.insecure_channel(token_server.address) as channel:
        stub = pb_stub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ListCollections(
                pb.ListCollectionsRequest(), metadata=(("authorization", f"Basic {READ_TOKEN}"),)
            )
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def pb_stub(channel: grpc.Channel):  # type: ignore[no-untyped-def]
    from service.generated.strata.v1 import strata_pb2_grpc

    return strata_pb2_grpc.StrataStub(channel)


def test_health_checks_need_no_token(token_server: ServerHandle) -> None:
    with grpc.insecure_channel(token_server.address) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_read_tokens_read_and_cannot_write(token_server: ServerHandle) -> None:
    with token_server.client(timeout=30, token=READ_TOKEN) as reader:
        assert reader.list_collections() == []
        # Reads get past the check (and fail on their own terms).
        assert refused(lambda: reader.get_collection("absent")).code == "NOT_FOUND"
        assert refused(lambda: reader.search("absent", [[1.0]], k=1)).code == "NOT_FOUND"
        for write in (
            lambda: reader.create_collection("nope"),
            lambda: reader.delete_collection("absent"),
            lambda: reader.delete_items("absent", [1]),
            lambda: list(reader.add_images("absent", [ImageToAdd("a.jpg", b"a")])),
        ):
            error = refused(write)
            assert error.code == "PERMISSION_DENIED", error
            assert "read-only" in error.details
        assert reader.list_collections() == []


def test_write_tokens_can_write(token_server: ServerHandle) -> None:
    with token_server.client(timeout=30, token=WRITE_TOKEN) as writer:
        assert writer.list_collections() == []
        # Past the token check: the writes fail only because the collection is absent.
        assert refused(lambda: writer.delete_collection("absent")).code == "NOT_FOUND"
        error = refused(lambda: list(writer.add_images("absent", [ImageToAdd("a", b"a")])))
        assert error.code == "NOT_FOUND"


def test_the_client_reads_its_token_from_the_environment(
    token_server: ServerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATA_TOKEN", READ_TOKEN)
    with token_server.client(timeout=30) as reader:
        assert reader.list_collections() == []
    with token_server.client(timeout=30, token="") as anonymous:  # "" asks for no token
        assert refused(anonymous.list_collections).code == "UNAUTHENTICATED"


def test_cli_token_flag(token_server: ServerHandle, capsys: pytest.CaptureFixture[str]) -> None:
    common = ["collections", "list", "--server", token_server.address, "--json"]
    assert cli.main(common) == 1
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "UNAUTHENTICATED"
    assert cli.main([*common, "--token", READ_TOKEN]) == 0
    assert json.loads(capsys.readouterr().out) == {"collections": []}


def test_every_rpc_is_classified_read_or_write() -> None:
    methods = set(pb.DESCRIPTOR.services_by_name["Strata"].methods_by_name)
    assert methods >= auth.READ_METHODS, auth.READ_METHODS - methods
    writes = {m for m in methods if auth.needs_write(f"/{auth.STRATA_SERVICE}/{m}")}
    assert {"CreateCollection", "DeleteCollection", "AddImages", "DeleteItems"} <= writes
    assert not writes & {"Search", "ListCollections", "GetItem", "Embed"}
    assert not auth.needs_write("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    labels = set(labels_pb2.DESCRIPTOR.services_by_name["Labels"].methods_by_name)
    assert labels >= auth.LABELS_READ_METHODS, auth.LABELS_READ_METHODS - labels
    assert auth.needs_write(f"/{auth.LABELS_SERVICE}/SetLabels")
    assert not auth.needs_write(f"/{auth.LABELS_SERVICE}/ExportLabels")


# -- deadlines and the concurrency cap ------------------------------------------------------------


def test_work_stops_when_the_client_gives_up(
    make_server: Callable[..., ServerHandle], small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    handle = make_server(batch_size=4)
    images = [ImageToAdd(u, d) for u, d in small_jpegs(160, 21)]
    with handle.client(timeout=120) as client:
        client.create_collection("deadline")
        list(client.add_images("deadline", images[:1]))  # the model is loaded
    # 159 images to add, or 160 in one search, take the server longer than this on any
    # machine (a forward pass on the CPU alone costs more than 2 ms an image); 1 s no longer
    # did on a CPU with native bf16.
    with handle.client(timeout=0.25) as hasty:
        error = refused(lambda: list(hasty.add_images("deadline", images[1:])))
        assert error.code == "DEADLINE_EXCEEDED"
        error = refused(lambda: hasty.search("deadline", [d.data for d in images], k=1))
        assert error.code == "DEADLINE_EXCEEDED"
    with handle.client(timeout=60) as client:
        # A batch already in the model may still land; then the count must stop, short of
        # every image (work that went on after the deadline would store them all).
        stored = settled(lambda: client.get_collection("deadline").items)
        assert stored < len(images), f"work went on after the deadline: {stored} stored"
        print(f"deadline: {stored} of {len(images)} images stored before the client gave up")
        hits = client.search("deadline", [images[0].data], k=1)[0]
        assert {d.hits[0].uri for d in hits.results} == {images[0].uri}


def test_requests_over_the_concurrency_cap_are_resource_exhausted(
    make_server: Callable[..., ServerHandle],
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
) -> None:
    handle = make_server(max_concurrent_requests=2, max_requests_per_client=2)
    release = threading.Event()
    images = small_jpegs(64, 2)

    def held_open(number: int) -> Iterator[pb.AddImageRequest]:
        uri, data = images[number]
        yield pb.AddImageRequest(collection="cap", uri=uri, image=data)
        release.wait(60)  # then the stream stays open, holding its slot, until released

    with handle.client(timeout=120) as client:
        client.create_collection("cap")
        calls = [client.stub.AddImages(held_open(i), timeout=120) for i in range(2)]
        # Each stream's first answer proves it holds a slot; then the cap is full...
        assert [next(call).status for call in calls] == ["added", "added"]
        error = refused(lambda: client.embed([("x.jpg", b"not an image")]))
        assert error.code == "RESOURCE_EXHAUSTED", error
        # ...while cheap reads keep their own room (service/limits.py).
        assert [c.name for c in client.list_collections()] == ["cap"]
        release.set()
        assert [list(call) for call in calls] == [[], []]
        assert client.get_collection("cap").items == 2


# -- graceful shutdown ----------------------------------------------------------------------------


def test_sigterm_drains_in_flight_work_and_saves_indexes(
    serve_process: Callable[..., ServeProcess],
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
) -> None:
    from indexer.store.index_manager import IndexManager
    from indexer.store.vector_index import VectorIndex

    server = serve_process(STRATA_INDEX_SAVE_INTERVAL_S="3600", STRATA_BATCH_SIZE="4")
    images = [ImageToAdd(u, d) for u, d in small_jpegs(24, 31)]
    statuses: list[str] = []
    with server.client(timeout=120) as client:
        info = client.create_collection("drain")
        list(client.add_images("drain", images[:1]))  # the model is loaded
    watched: list[int] = []
    channel = grpc.insecure_channel(server.address)
    watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)

    def follow() -> None:
        try:
            for response in watch:
                watched.append(response.status)
        except grpc.RpcError:
            pass

    follower = threading.Thread(target=follow)
    follower.start()
    with server.client(timeout=120) as client:
        for result in client.add_images("drain", images[1:]):
            statuses.append(result.status)
            if len(statuses) == 1:
                server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(60)
    follower.join(10)
    channel.close()
    assert code == 0, server.log()
    assert statuses == ["added"] * (len(images) - 1), "in-flight images were dropped"
    assert watched[0] == health_pb2.HealthCheckResponse.SERVING
    assert health_pb2.HealthCheckResponse.NOT_SERVING in watched, watched
    assert "saved 3 index file(s) on close" in server.log()
    root = server.data_dir / "indexes"
    for depth in info.depths:
        path = next(root.glob(f"*/{IndexManager(root, None).path_for(0, depth.name).name}"))  # type: ignore[arg-type]
        assert VectorIndex.load(path, depth.dim).ntotal == len(images), depth.name
