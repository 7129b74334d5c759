from . import strata_pb2 as _strata_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetThumbnailsRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Thumbnail(_message.Message):
    __slots__ = ("id", "media_type", "data", "width", "height")
    ID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    id: int
    media_type: str
    data: bytes
    width: int
    height: int
    def __init__(self, id: _Optional[int] = ..., media_type: _Optional[str] = ..., data: _Optional[bytes] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class GetThumbnailsResponse(_message.Message):
    __slots__ = ("thumbnails", "missing")
    THUMBNAILS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    thumbnails: _containers.RepeatedCompositeFieldContainer[Thumbnail]
    missing: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, thumbnails: _Optional[_Iterable[_Union[Thumbnail, _Mapping]]] = ..., missing: _Optional[_Iterable[int]] = ...) -> None: ...

class BackfillThumbnailsRequest(_message.Message):
    __slots__ = ("collection", "id", "image")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    id: int
    image: bytes
    def __init__(self, collection: _Optional[str] = ..., id: _Optional[int] = ..., image: _Optional[bytes] = ...) -> None: ...

class BackfillThumbnailsResponse(_message.Message):
    __slots__ = ("written", "failed")
    WRITTEN_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    written: int
    failed: _containers.RepeatedCompositeFieldContainer[_strata_pb2.AddImageResult]
    def __init__(self, written: _Optional[int] = ..., failed: _Optional[_Iterable[_Union[_strata_pb2.AddImageResult, _Mapping]]] = ...) -> None: ...

class ListItemsRequest(_message.Message):
    __slots__ = ("collection", "page_size", "page_token", "order_by", "filter", "label_source", "without_thumbnail")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LABEL_SOURCE_FIELD_NUMBER: _ClassVar[int]
    WITHOUT_THUMBNAIL_FIELD_NUMBER: _ClassVar[int]
    collection: str
    page_size: int
    page_token: str
    order_by: str
    filter: _strata_pb2.Filter
    label_source: str
    without_thumbnail: bool
    def __init__(self, collection: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., order_by: _Optional[str] = ..., filter: _Optional[_Union[_strata_pb2.Filter, _Mapping]] = ..., label_source: _Optional[str] = ..., without_thumbnail: _Optional[bool] = ...) -> None: ...

class ListItemsResponse(_message.Message):
    __slots__ = ("items", "next_page_token", "total")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[_strata_pb2.Item]
    next_page_token: str
    total: int
    def __init__(self, items: _Optional[_Iterable[_Union[_strata_pb2.Item, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ...) -> None: ...

class GetProjectionRequest(_message.Message):
    __slots__ = ("collection", "depth", "method")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    collection: str
    depth: str
    method: str
    def __init__(self, collection: _Optional[str] = ..., depth: _Optional[str] = ..., method: _Optional[str] = ...) -> None: ...

class Projection(_message.Message):
    __slots__ = ("collection", "depth", "method", "count", "ids", "xy", "cached", "seconds", "collection_version")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    XY_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    depth: str
    method: str
    count: int
    ids: bytes
    xy: bytes
    cached: bool
    seconds: float
    collection_version: int
    def __init__(self, collection: _Optional[str] = ..., depth: _Optional[str] = ..., method: _Optional[str] = ..., count: _Optional[int] = ..., ids: _Optional[bytes] = ..., xy: _Optional[bytes] = ..., cached: _Optional[bool] = ..., seconds: _Optional[float] = ..., collection_version: _Optional[int] = ...) -> None: ...
