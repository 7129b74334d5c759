"""A small synchronous Python client for the Strata gRPC API.

with StrataClient("127.0.0.1:50051") as client:
    client.create_collection("photos")
    for result in client.add_images("photos", [ImageToAdd("cat.jpg", data)]):
        print(result.id, result.status)
    hits = client.search("photos", [Path("query.jpg")], k=5)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc

from indexer.core.vocabulary import MAX_IMAGES_PER_REQUEST
from service.browse_client import BrowseClientMixin
from service.generated.strata.v1 import strata_pb2 as pb
from service.generated.strata.v1 import strata_pb2_grpc as pb_grpc
from service.insight_client import InsightClientMixin
from service.labels_client import LabelsClientMixin

DEFAULT_SERVER = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class StrataClientError(Exception):
    """A call failed; `code` is the gRPC status name, `details` the server's message."""

    def __init__(self, code: str, details: str):
        super().__init__(f"{code}: {details}")
        self.code = code
        self.details = details


@dataclass(frozen=True)
class ImageToAdd:
    uri: str
    data: bytes
    labels: Sequence[str] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    tags: bool = False  # also store its ImageNet WordNet tags as metadata


QueryLike = Path | bytes | int | Sequence[float] | pb.Query


def default_server() -> str:
    return os.environ.get("STRATA_SERVER") or DEFAULT_SERVER


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
    ):
        self.target = target or default_server()
        self.timeout = timeout
        options = [
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ]
        if root_certificates is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates, private_key, certificate_chain
            )
            self._channel = grpc.secure_channel(self.target, credentials, options)
        else:
            self._channel = grpc.insecure_channel(self.target, options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.stub = pb_grpc.StrataStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> StrataClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise _client_error(exc) from None

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
        """Stream images in; yields one result per image, in order, as the server answers."""

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
            raise _client_error(exc) from None

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
    if isinstance(value, Path):
        return pb.Query(name=str(value), image=value.read_bytes())
    if isinstance(value, bytes):
        return pb.Query(name=f"image {position}", image=value)
    if isinstance(value, int):
        return pb.Query(name=str(value), item_id=value)
    return pb.Query(name=f"vector {position}", vector=pb.Vector(values=list(value)))


def _client_error(exc: grpc.RpcError) -> StrataClientError:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return StrataClientError(code.name if code is not None else "UNKNOWN", details or "")
