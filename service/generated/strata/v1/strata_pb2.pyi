from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Layer(_message.Message):
    __slots__ = ("name", "channels", "stride", "presets")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    STRIDE_FIELD_NUMBER: _ClassVar[int]
    PRESETS_FIELD_NUMBER: _ClassVar[int]
    name: str
    channels: int
    stride: int
    presets: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., channels: _Optional[int] = ..., stride: _Optional[int] = ..., presets: _Optional[_Iterable[str]] = ...) -> None: ...

class Backbone(_message.Message):
    __slots__ = ("name", "description", "weights_available", "weights_hint", "input_size", "presets")
    class PresetsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_HINT_FIELD_NUMBER: _ClassVar[int]
    INPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    PRESETS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    weights_available: bool
    weights_hint: str
    input_size: int
    presets: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., weights_available: _Optional[bool] = ..., weights_hint: _Optional[str] = ..., input_size: _Optional[int] = ..., presets: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListBackbonesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListBackbonesResponse(_message.Message):
    __slots__ = ("backbones",)
    BACKBONES_FIELD_NUMBER: _ClassVar[int]
    backbones: _containers.RepeatedCompositeFieldContainer[Backbone]
    def __init__(self, backbones: _Optional[_Iterable[_Union[Backbone, _Mapping]]] = ...) -> None: ...

class ListLayersRequest(_message.Message):
    __slots__ = ("backbone",)
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    backbone: str
    def __init__(self, backbone: _Optional[str] = ...) -> None: ...

class ListLayersResponse(_message.Message):
    __slots__ = ("backbone", "layers")
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    backbone: str
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    def __init__(self, backbone: _Optional[str] = ..., layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ...) -> None: ...

class DepthInfo(_message.Message):
    __slots__ = ("name", "layer", "dim", "vectors", "index_vectors")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    INDEX_VECTORS_FIELD_NUMBER: _ClassVar[int]
    name: str
    layer: str
    dim: int
    vectors: int
    index_vectors: int
    def __init__(self, name: _Optional[str] = ..., layer: _Optional[str] = ..., dim: _Optional[int] = ..., vectors: _Optional[int] = ..., index_vectors: _Optional[int] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("name", "backbone", "pooling", "depths", "items", "framing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    DEPTHS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    FRAMING_FIELD_NUMBER: _ClassVar[int]
    name: str
    backbone: str
    pooling: str
    depths: _containers.RepeatedCompositeFieldContainer[DepthInfo]
    items: int
    framing: str
    def __init__(self, name: _Optional[str] = ..., backbone: _Optional[str] = ..., pooling: _Optional[str] = ..., depths: _Optional[_Iterable[_Union[DepthInfo, _Mapping]]] = ..., items: _Optional[int] = ..., framing: _Optional[str] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "backbone", "depths", "pooling", "framing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    DEPTHS_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    FRAMING_FIELD_NUMBER: _ClassVar[int]
    name: str
    backbone: str
    depths: _containers.RepeatedScalarFieldContainer[str]
    pooling: str
    framing: str
    def __init__(self, name: _Optional[str] = ..., backbone: _Optional[str] = ..., depths: _Optional[_Iterable[str]] = ..., pooling: _Optional[str] = ..., framing: _Optional[str] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCollectionResponse(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class LabelValue(_message.Message):
    __slots__ = ("label", "source", "confidence")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    label: str
    source: str
    confidence: float
    def __init__(self, label: _Optional[str] = ..., source: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class Item(_message.Message):
    __slots__ = ("id", "uri", "content_hash", "width", "height", "labels", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: int
    uri: str
    content_hash: str
    width: int
    height: int
    labels: _containers.RepeatedCompositeFieldContainer[LabelValue]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[int] = ..., uri: _Optional[str] = ..., content_hash: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., labels: _Optional[_Iterable[_Union[LabelValue, _Mapping]]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class AddImageRequest(_message.Message):
    __slots__ = ("collection", "uri", "image", "labels", "metadata", "tags")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    uri: str
    image: bytes
    labels: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    tags: bool
    def __init__(self, collection: _Optional[str] = ..., uri: _Optional[str] = ..., image: _Optional[bytes] = ..., labels: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., tags: _Optional[bool] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "hint")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    hint: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., hint: _Optional[str] = ...) -> None: ...

class AddImageResult(_message.Message):
    __slots__ = ("uri", "id", "status", "error")
    URI_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    uri: str
    id: int
    status: str
    error: Error
    def __init__(self, uri: _Optional[str] = ..., id: _Optional[int] = ..., status: _Optional[str] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class GetItemRequest(_message.Message):
    __slots__ = ("collection", "id")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    collection: str
    id: int
    def __init__(self, collection: _Optional[str] = ..., id: _Optional[int] = ...) -> None: ...

class DeleteItemsRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[int]] = ...) -> None: ...

class DeleteItemsResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, deleted: _Optional[_Iterable[int]] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class Query(_message.Message):
    __slots__ = ("name", "image", "item_id", "vector")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    image: bytes
    item_id: int
    vector: Vector
    def __init__(self, name: _Optional[str] = ..., image: _Optional[bytes] = ..., item_id: _Optional[int] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("labels_any", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    LABELS_ANY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    labels_any: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, labels_any: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "queries", "depths", "k", "filter")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    DEPTHS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    collection: str
    queries: _containers.RepeatedCompositeFieldContainer[Query]
    depths: _containers.RepeatedScalarFieldContainer[str]
    k: int
    filter: Filter
    def __init__(self, collection: _Optional[str] = ..., queries: _Optional[_Iterable[_Union[Query, _Mapping]]] = ..., depths: _Optional[_Iterable[str]] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "uri", "score", "labels", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: int
    uri: str
    score: float
    labels: _containers.RepeatedScalarFieldContainer[str]
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[int] = ..., uri: _Optional[str] = ..., score: _Optional[float] = ..., labels: _Optional[_Iterable[str]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DepthHits(_message.Message):
    __slots__ = ("depth", "hits")
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    depth: str
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    def __init__(self, depth: _Optional[str] = ..., hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ...) -> None: ...

class QueryResult(_message.Message):
    __slots__ = ("query", "results")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    query: str
    results: _containers.RepeatedCompositeFieldContainer[DepthHits]
    def __init__(self, query: _Optional[str] = ..., results: _Optional[_Iterable[_Union[DepthHits, _Mapping]]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("queries",)
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    queries: _containers.RepeatedCompositeFieldContainer[QueryResult]
    def __init__(self, queries: _Optional[_Iterable[_Union[QueryResult, _Mapping]]] = ...) -> None: ...

class NamedImage(_message.Message):
    __slots__ = ("uri", "image")
    URI_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    uri: str
    image: bytes
    def __init__(self, uri: _Optional[str] = ..., image: _Optional[bytes] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("images", "collection", "backbone", "depths", "pooling")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    DEPTHS_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[NamedImage]
    collection: str
    backbone: str
    depths: _containers.RepeatedScalarFieldContainer[str]
    pooling: str
    def __init__(self, images: _Optional[_Iterable[_Union[NamedImage, _Mapping]]] = ..., collection: _Optional[str] = ..., backbone: _Optional[str] = ..., depths: _Optional[_Iterable[str]] = ..., pooling: _Optional[str] = ...) -> None: ...

class DepthVector(_message.Message):
    __slots__ = ("depth", "values")
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    depth: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, depth: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("uri", "vectors", "error")
    URI_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    uri: str
    vectors: _containers.RepeatedCompositeFieldContainer[DepthVector]
    error: Error
    def __init__(self, uri: _Optional[str] = ..., vectors: _Optional[_Iterable[_Union[DepthVector, _Mapping]]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("embeddings",)
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    def __init__(self, embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("images", "k", "backbone", "coarse")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    BACKBONE_FIELD_NUMBER: _ClassVar[int]
    COARSE_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[NamedImage]
    k: int
    backbone: str
    coarse: int
    def __init__(self, images: _Optional[_Iterable[_Union[NamedImage, _Mapping]]] = ..., k: _Optional[int] = ..., backbone: _Optional[str] = ..., coarse: _Optional[int] = ...) -> None: ...

class ClassScore(_message.Message):
    __slots__ = ("label", "score", "wnid", "path")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    WNID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    wnid: str
    path: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ..., wnid: _Optional[str] = ..., path: _Optional[_Iterable[str]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("uri", "top", "error", "coarse")
    URI_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    COARSE_FIELD_NUMBER: _ClassVar[int]
    uri: str
    top: _containers.RepeatedCompositeFieldContainer[ClassScore]
    error: Error
    coarse: _containers.RepeatedCompositeFieldContainer[ClassScore]
    def __init__(self, uri: _Optional[str] = ..., top: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., coarse: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("predictions",)
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    def __init__(self, predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ...) -> None: ...
