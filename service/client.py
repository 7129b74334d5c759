"""A small synchronous Python client for the Strata gRPC API.

with StrataClient("127.0.0.1:50051") as client:
    client.create_collection("photos")
    for result in client.add_images("photos", [ImageToAdd("cat.jpg", data)]):
        print(result.id, result.status)
    hits = client.search("photos", [Path("query.jpg")], k=5)
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from indexer.core.vocabulary import MAX_IMAGES_PER_REQUEST
from service.browse_client import BrowseClientMixin
from service.generated.strata.v1 import strata_pb2 as pb
from service.generated.strata.v1 import strata_pb2_grpc as pb_grpc
from service.insight_client import InsightClientMixin
from service.labels_client import LabelsClientMixin

DEFAULT_SERVER = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class StrataClientError(Exception):
    """A call failed. `code` is the gRPC status name ("NOT_FOUND", "INVALID_ARGUMENT", ...);
    `details` the whole message, which is `message`, then " Hint: " and `hint` when the
    server (or, for a connection that failed, this client) says how to fix it.

    Calls that take many images (add_images, embed, classify, explain, predict_probe) do not
    raise for one bad image: each result carries its own `error` (code, message, hint)."""

    def __init__(self, code: str, details: str):
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details
        message, separator, hint = details.rpartition(HINT_SEPARATOR)
        self.message = message if separator else details
        self.hint = hint if separator else ""


#: How indexer.core.errors.StrataError joins a message and its hint in a status's details.
HINT_SEPARATOR = " Hint: "


@dataclass(frozen=True)
class ImageToAdd:
    uri: str
    data: bytes
    labels: Sequence[str] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    tags: bool = False  # also store its ImageNet WordNet tags as metadata


#: A search query: an image file (Path or str), image bytes, a stored item's id (int, numpy
#: integers included), a raw vector, or a pb.Query.
QueryLike = (
    os.PathLike[str] | str | bytes | bytearray | int | numbers.Integral | Sequence[float] | pb.Query
)


def default_server() -> str:
    return os.environ.get("STRATA_SERVER") or DEFAULT_SERVER


def channel_credentials(
    root_certificates: bytes | None,
    private_key: bytes | None,
    certificate_chain: bytes | None,
) -> grpc.ChannelCredentials | None:
    """TLS when any of the three is given (without a CA, the system's trusted roots check the
    server); None for plaintext. A client certificate needs its key and the key its
    certificate: gRPC aborts the process on one without the other, so refuse it here."""
    if (private_key is None) != (certificate_chain is None):
        raise ValueError(
            "a client certificate and its private key go together: pass both "
            "(--cert and --key; private_key= and certificate_chain=) or neither"
        )
    if root_certificates is None and private_key is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)


def open_channel(
    target: str,
    credentials: grpc.ChannelCredentials | None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A channel to `target` with Strata's message limits (and `options`), over TLS when
    `credentials` are given."""
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        *options,
    ]
    if credentials is not None:
        return grpc.secure_channel(target, credentials, options)
    return grpc.insecure_channel(target, options)


class StrataClient(LabelsClientMixin, InsightClientMixin, BrowseClientMixin):
    def __init__(
        self,
        target: str | None = None,
        *,
        timeout: float | None = None,
        token: str | None = None,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        channel: grpc.Channel | None = None,
    ):
        """`target` defaults to STRATA_SERVER (else 127.0.0.1:50051) and `token` to
        STRATA_TOKEN, as for the CLI. TLS is on when `root_certificates` or a client
        certificate is given. With `channel` (from `open_channel`), the client uses that
        connection and leaves it open on close: many clients, one per token, can share it."""
        self.target = target or default_server()
        self.timeout = timeout
        self._owns_channel = channel is None
        if channel is None:
            credentials = channel_credentials(root_certificates, private_key, certificate_chain)
            self.tls = credentials is not None
            channel = open_channel(self.target, credentials)
        else:  # the certificates only say how the shared channel was opened (for hints)
            self.tls = root_certificates is not None or private_key is not None
        self._channel = channel
        token = token if token is not None else os.environ.get("STRATA_TOKEN") or None
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.stub = pb_grpc.StrataStub(self._channel)

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> StrataClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _client_error(exc, self.target, self.tls) from None

    # -- health ---------------------------------------------------------------------------

    def health(self, service: str = "", timeout: float | None = 5.0) -> str:
        """The server's gRPC health status for `service` ("" = the whole server, or a
        service's full name such as "strata.v1.Strata"): "SERVING", "NOT_SERVING" (starting,
        shutting down, or a replica too far behind) or "SERVICE_UNKNOWN". Open to callers
        without a token. `timeout` (seconds) applies when the client has none of its own."""
        stub = health_pb2_grpc.HealthStub(self._channel)
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            response = stub.Check(request, timeout=self.timeout or timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # how the health service says it
                return "SERVICE_UNKNOWN"
            raise _client_error(exc, self.target, self.tls) from None
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    # -- backbones and collections --------------------------------------------------------

    def list_backbones(self) -> list[pb.Backbone]:
        return list(self._call(self.stub.ListBackbones, pb.ListBackbonesRequest()).backbones)

    def list_layers(self, backbone: str = "") -> pb.ListLayersResponse:
        return self._call(self.stub.ListLayers, pb.ListLayersRequest(backbone=backbone))

    def create_collection(
        self,
        name: str,
        backbone: str = "",
        depths: Sequence[str] = (),
        pooling: str = "",
        framing: str = "",
    ) -> pb.Collection:
        request = pb.CreateCollectionRequest(
            name=name, backbone=backbone, depths=list(depths), pooling=pooling, framing=framing
        )
        return self._call(self.stub.CreateCollection, request)

    def list_collections(self) -> list[pb.Collection]:
        return list(self._call(self.stub.ListCollections, pb.ListCollectionsRequest()).collections)

    def get_collection(self, name: str) -> pb.Collection:
        return self._call(self.stub.GetCollection, pb.GetCollectionRequest(name=name))

    def delete_collection(self, name: str) -> None:
        self._call(self.stub.DeleteCollection, pb.DeleteCollectionRequest(name=name))

    # -- items ----------------------------------------------------------------------------

    def add_images(
        self, collection: str, images: Iterable[ImageToAdd]
    ) -> Iterator[pb.AddImageResult]:
        """Stream images in; yields one result per image, in order, as the server answers.
        A generator: nothing is sent until it is iterated (`list(client.add_images(...))`),
        and a call-level error (an unknown collection) raises at the first result."""

        def requests() -> Iterator[pb.AddImageRequest]:
            for position, image in enumerate(images):
                yield pb.AddImageRequest(
                    collection=collection if position == 0 else "",
                    uri=image.uri,
                    image=image.data,
                    labels=list(image.labels),
                    metadata=dict(image.metadata),
                    tags=image.tags,
                )

        try:
            yield from self.stub.AddImages(
                requests(), timeout=self.timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise _client_error(exc, self.target, self.tls) from None

    def get_item(self, collection: str, item_id: int) -> pb.Item:
        return self._call(self.stub.GetItem, pb.GetItemRequest(collection=collection, id=item_id))

    def delete_items(self, collection: str, ids: Sequence[int]) -> list[int]:
        request = pb.DeleteItemsRequest(collection=collection, ids=list(ids))
        return list(self._call(self.stub.DeleteItems, request).deleted)

    # -- search, embed, classify ----------------------------------------------------------

    def search(
        self,
        collection: str,
        queries: Sequence[QueryLike],
        *,
        depths: Sequence[str] = (),
        k: int = 10,
        labels_any: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> list[pb.QueryResult]:
        """Queries may be image paths, image bytes, item ids, raw vectors or pb.Query."""
        where = pb.Filter(labels_any=list(labels_any), metadata=dict(metadata or {}))
        built = [to_query(q, i) for i, q in enumerate(queries)]
        out: list[pb.QueryResult] = []
        for chunk in _calls(built, _query_bytes):  # long lists over several calls
            request = pb.SearchRequest(
                collection=collection, queries=chunk, depths=list(depths), k=k, filter=where
            )
            out.extend(self._call(self.stub.Search, request).queries)
        return out

    def embed(
        self,
        images: Sequence[tuple[str, bytes]],
        *,
        collection: str = "",
        backbone: str = "",
        depths: Sequence[str] = (),
        pooling: str = "",
    ) -> list[pb.Embedding]:
        out: list[pb.Embedding] = []
        for chunk in _calls(list(images), _image_bytes):  # long lists over several calls
            request = pb.EmbedRequest(
                images=[pb.NamedImage(uri=u, image=d) for u, d in chunk],
                collection=collection,
                backbone=backbone,
                depths=list(depths),
                pooling=pooling,
            )
            out.extend(self._call(self.stub.Embed, request).embeddings)
        return out

    def classify(
        self,
        images: Sequence[tuple[str, bytes]],
        *,
        k: int = 5,
        backbone: str = "",
        coarse: int = 0,
    ) -> list[pb.Prediction]:
        """Top-k ImageNet classes (with WordNet ids and paths); `coarse` > 0 adds that many
        coarse categories."""
        out: list[pb.Prediction] = []
        for chunk in _calls(list(images), _image_bytes):  # long lists over several calls
            request = pb.ClassifyRequest(
                images=[pb.NamedImage(uri=u, image=d) for u, d in chunk],
                k=k,
                backbone=backbone,
                coarse=coarse,
            )
            out.extend(self._call(self.stub.Classify, request).predictions)
        return out


#: How much one call carries at most: the server's per-call image limit, and a share of
#: its 64 MB message limit (the rest is room for the other fields).
CALL_ITEMS = MAX_IMAGES_PER_REQUEST
CALL_BYTES = 48 * 1024 * 1024

T = TypeVar("T")


def _calls(items: Sequence[T], size: Callable[[T], int]) -> Iterator[list[T]]:
    """`items` in consecutive chunks of at most CALL_ITEMS and (but for a single item that
    alone is larger) CALL_BYTES, in order; nothing for no items but one empty chunk, so the
    server still answers an empty call with its own error."""
    chunk: list[T] = []
    total = 0
    for item in items:
        weight = size(item)
        if chunk and (len(chunk) >= CALL_ITEMS or total + weight > CALL_BYTES):
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += weight
    yield chunk


def _image_bytes(image: tuple[str, bytes]) -> int:
    return len(image[0]) + len(image[1])


def _query_bytes(query: pb.Query) -> int:
    return int(query.ByteSize())


def to_query(value: QueryLike, position: int = 0) -> pb.Query:
    if isinstance(value, pb.Query):
        return value
    if isinstance(value, str | os.PathLike):
        return pb.Query(name=str(value), image=Path(value).read_bytes())
    if isinstance(value, bytes | bytearray | memoryview):
        return pb.Query(name=f"image {position}", image=bytes(value))
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return pb.Query(name=str(int(value)), item_id=int(value))
    if isinstance(value, Iterable):
        return pb.Query(name=f"vector {position}", vector=pb.Vector(values=list(value)))
    raise TypeError(
        f"query {position} is a {type(value).__name__}: give an image path, image bytes, "
        "an item id, a vector of floats or a pb.Query"
    )


def _client_error(exc: grpc.RpcError, target: str, tls: bool) -> StrataClientError:
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
    if code == grpc.StatusCode.UNAVAILABLE and HINT_SEPARATOR not in details:
        # Not the server's answer but the connection's: say what usually causes it.
        hint = f"check that `strata serve` runs at {target}"
        hint += (
            "; with mutual TLS on the server, give a certificate it trusts (--cert, --key)"
            if tls
            else "; if the server uses TLS, pass --ca (and --cert, --key for mutual TLS)"
        )
        details = f"{details}{HINT_SEPARATOR}{hint}"
    return StrataClientError(code.name if code is not None else "UNKNOWN", details)
