from . import strata_pb2 as _strata_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExplainRequest(_message.Message):
    __slots__ = ("collection", "images", "depth", "label", "imagenet_class")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    IMAGENET_CLASS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    images: _containers.RepeatedCompositeFieldContainer[_strata_pb2.NamedImage]
    depth: str
    label: str
    imagenet_class: str
    def __init__(self, collection: _Optional[str] = ..., images: _Optional[_Iterable[_Union[_strata_pb2.NamedImage, _Mapping]]] = ..., depth: _Optional[str] = ..., label: _Optional[str] = ..., imagenet_class: _Optional[str] = ...) -> None: ...

class Heatmap(_message.Message):
    __slots__ = ("rows", "cols", "values")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("uri", "target", "score", "depth", "layer", "heatmap", "framed", "error")
    URI_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    FRAMED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    uri: str
    target: str
    score: float
    depth: str
    layer: str
    heatmap: Heatmap
    framed: bytes
    error: _strata_pb2.Error
    def __init__(self, uri: _Optional[str] = ..., target: _Optional[str] = ..., score: _Optional[float] = ..., depth: _Optional[str] = ..., layer: _Optional[str] = ..., heatmap: _Optional[_Union[Heatmap, _Mapping]] = ..., framed: _Optional[bytes] = ..., error: _Optional[_Union[_strata_pb2.Error, _Mapping]] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("explanations",)
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    explanations: _containers.RepeatedCompositeFieldContainer[Explanation]
    def __init__(self, explanations: _Optional[_Iterable[_Union[Explanation, _Mapping]]] = ...) -> None: ...

class ChannelsRequest(_message.Message):
    __slots__ = ("collection", "depth", "channels", "top")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    collection: str
    depth: str
    channels: int
    top: int
    def __init__(self, collection: _Optional[str] = ..., depth: _Optional[str] = ..., channels: _Optional[int] = ..., top: _Optional[int] = ...) -> None: ...

class ChannelItem(_message.Message):
    __slots__ = ("id", "uri", "value")
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    id: int
    uri: str
    value: float
    def __init__(self, id: _Optional[int] = ..., uri: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class Channel(_message.Message):
    __slots__ = ("index", "variance", "items")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    VARIANCE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    index: int
    variance: float
    items: _containers.RepeatedCompositeFieldContainer[ChannelItem]
    def __init__(self, index: _Optional[int] = ..., variance: _Optional[float] = ..., items: _Optional[_Iterable[_Union[ChannelItem, _Mapping]]] = ...) -> None: ...

class ChannelsResponse(_message.Message):
    __slots__ = ("depth", "layer", "items", "channels")
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    depth: str
    layer: str
    items: int
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    def __init__(self, depth: _Optional[str] = ..., layer: _Optional[str] = ..., items: _Optional[int] = ..., channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ...) -> None: ...
