from . import strata_pb2 as _strata_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LabelAssignment(_message.Message):
    __slots__ = ("id", "labels")
    ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    id: int
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[int] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class SetLabelsRequest(_message.Message):
    __slots__ = ("collection", "items")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    items: _containers.RepeatedCompositeFieldContainer[LabelAssignment]
    def __init__(self, collection: _Optional[str] = ..., items: _Optional[_Iterable[_Union[LabelAssignment, _Mapping]]] = ...) -> None: ...

class SetLabelsResponse(_message.Message):
    __slots__ = ("labels",)
    LABELS_FIELD_NUMBER: _ClassVar[int]
    labels: int
    def __init__(self, labels: _Optional[int] = ...) -> None: ...

class ClearLabelsRequest(_message.Message):
    __slots__ = ("collection", "ids", "all", "source")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[int]
    all: bool
    source: str
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[int]] = ..., all: _Optional[bool] = ..., source: _Optional[str] = ...) -> None: ...

class ClearLabelsResponse(_message.Message):
    __slots__ = ("cleared",)
    CLEARED_FIELD_NUMBER: _ClassVar[int]
    cleared: int
    def __init__(self, cleared: _Optional[int] = ...) -> None: ...

class ImportLabelsRequest(_message.Message):
    __slots__ = ("collection", "csv", "key")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CSV_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    collection: str
    csv: str
    key: str
    def __init__(self, collection: _Optional[str] = ..., csv: _Optional[str] = ..., key: _Optional[str] = ...) -> None: ...

class ImportLabelsResponse(_message.Message):
    __slots__ = ("items", "labels")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    items: int
    labels: int
    def __init__(self, items: _Optional[int] = ..., labels: _Optional[int] = ...) -> None: ...

class ExportLabelsRequest(_message.Message):
    __slots__ = ("collection", "source")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    collection: str
    source: str
    def __init__(self, collection: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class ItemLabel(_message.Message):
    __slots__ = ("id", "uri", "label", "source", "confidence")
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    id: int
    uri: str
    label: str
    source: str
    confidence: float
    def __init__(self, id: _Optional[int] = ..., uri: _Optional[str] = ..., label: _Optional[str] = ..., source: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class ExportLabelsResponse(_message.Message):
    __slots__ = ("labels", "csv")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CSV_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedCompositeFieldContainer[ItemLabel]
    csv: str
    def __init__(self, labels: _Optional[_Iterable[_Union[ItemLabel, _Mapping]]] = ..., csv: _Optional[str] = ...) -> None: ...

class ProbeRequest(_message.Message):
    __slots__ = ("collection", "depths", "folds", "seed")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DEPTHS_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    collection: str
    depths: _containers.RepeatedScalarFieldContainer[str]
    folds: int
    seed: int
    def __init__(self, collection: _Optional[str] = ..., depths: _Optional[_Iterable[str]] = ..., folds: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class ClassMetric(_message.Message):
    __slots__ = ("label", "accuracy", "support")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_FIELD_NUMBER: _ClassVar[int]
    label: str
    accuracy: float
    support: int
    def __init__(self, label: _Optional[str] = ..., accuracy: _Optional[float] = ..., support: _Optional[int] = ...) -> None: ...

class DepthProbe(_message.Message):
    __slots__ = ("depth", "dim", "accuracy", "macro_f1", "n_train", "n_test", "folds", "c", "classes", "per_class", "confusion")
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    MACRO_F1_FIELD_NUMBER: _ClassVar[int]
    N_TRAIN_FIELD_NUMBER: _ClassVar[int]
    N_TEST_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    C_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    PER_CLASS_FIELD_NUMBER: _ClassVar[int]
    CONFUSION_FIELD_NUMBER: _ClassVar[int]
    depth: str
    dim: int
    accuracy: float
    macro_f1: float
    n_train: int
    n_test: int
    folds: int
    c: float
    classes: _containers.RepeatedScalarFieldContainer[str]
    per_class: _containers.RepeatedCompositeFieldContainer[ClassMetric]
    confusion: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, depth: _Optional[str] = ..., dim: _Optional[int] = ..., accuracy: _Optional[float] = ..., macro_f1: _Optional[float] = ..., n_train: _Optional[int] = ..., n_test: _Optional[int] = ..., folds: _Optional[int] = ..., c: _Optional[float] = ..., classes: _Optional[_Iterable[str]] = ..., per_class: _Optional[_Iterable[_Union[ClassMetric, _Mapping]]] = ..., confusion: _Optional[_Iterable[int]] = ...) -> None: ...

class ProbeResponse(_message.Message):
    __slots__ = ("depths",)
    DEPTHS_FIELD_NUMBER: _ClassVar[int]
    depths: _containers.RepeatedCompositeFieldContainer[DepthProbe]
    def __init__(self, depths: _Optional[_Iterable[_Union[DepthProbe, _Mapping]]] = ...) -> None: ...

class PredictProbeRequest(_message.Message):
    __slots__ = ("collection", "depth", "ids", "images")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    collection: str
    depth: str
    ids: _containers.RepeatedScalarFieldContainer[int]
    images: _containers.RepeatedCompositeFieldContainer[_strata_pb2.NamedImage]
    def __init__(self, collection: _Optional[str] = ..., depth: _Optional[str] = ..., ids: _Optional[_Iterable[int]] = ..., images: _Optional[_Iterable[_Union[_strata_pb2.NamedImage, _Mapping]]] = ...) -> None: ...

class ProbePrediction(_message.Message):
    __slots__ = ("id", "uri", "scores", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: int
    uri: str
    scores: _containers.RepeatedCompositeFieldContainer[_strata_pb2.ClassScore]
    error: _strata_pb2.Error
    def __init__(self, id: _Optional[int] = ..., uri: _Optional[str] = ..., scores: _Optional[_Iterable[_Union[_strata_pb2.ClassScore, _Mapping]]] = ..., error: _Optional[_Union[_strata_pb2.Error, _Mapping]] = ...) -> None: ...

class PredictProbeResponse(_message.Message):
    __slots__ = ("depth", "classes", "predictions")
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    depth: str
    classes: _containers.RepeatedScalarFieldContainer[str]
    predictions: _containers.RepeatedCompositeFieldContainer[ProbePrediction]
    def __init__(self, depth: _Optional[str] = ..., classes: _Optional[_Iterable[str]] = ..., predictions: _Optional[_Iterable[_Union[ProbePrediction, _Mapping]]] = ...) -> None: ...

class MethodScore(_message.Message):
    __slots__ = ("method", "depth", "cv_accuracy")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    CV_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    method: str
    depth: str
    cv_accuracy: float
    def __init__(self, method: _Optional[str] = ..., depth: _Optional[str] = ..., cv_accuracy: _Optional[float] = ...) -> None: ...

class PredictLabelsRequest(_message.Message):
    __slots__ = ("collection", "depths", "methods", "folds", "seed", "dry_run")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DEPTHS_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    collection: str
    depths: _containers.RepeatedScalarFieldContainer[str]
    methods: _containers.RepeatedScalarFieldContainer[str]
    folds: int
    seed: int
    dry_run: bool
    def __init__(self, collection: _Optional[str] = ..., depths: _Optional[_Iterable[str]] = ..., methods: _Optional[_Iterable[str]] = ..., folds: _Optional[int] = ..., seed: _Optional[int] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class LabelPrediction(_message.Message):
    __slots__ = ("id", "uri", "label", "confidence")
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    id: int
    uri: str
    label: str
    confidence: float
    def __init__(self, id: _Optional[int] = ..., uri: _Optional[str] = ..., label: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class PredictLabelsResponse(_message.Message):
    __slots__ = ("method", "depth", "cv_accuracy", "predictions", "candidates", "stored")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    CV_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    method: str
    depth: str
    cv_accuracy: float
    predictions: _containers.RepeatedCompositeFieldContainer[LabelPrediction]
    candidates: _containers.RepeatedCompositeFieldContainer[MethodScore]
    stored: int
    def __init__(self, method: _Optional[str] = ..., depth: _Optional[str] = ..., cv_accuracy: _Optional[float] = ..., predictions: _Optional[_Iterable[_Union[LabelPrediction, _Mapping]]] = ..., candidates: _Optional[_Iterable[_Union[MethodScore, _Mapping]]] = ..., stored: _Optional[int] = ...) -> None: ...

class SuggestLabelsRequest(_message.Message):
    __slots__ = ("collection", "n", "depth", "metadata", "folds", "seed")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    collection: str
    n: int
    depth: str
    metadata: _containers.ScalarMap[str, str]
    folds: int
    seed: int
    def __init__(self, collection: _Optional[str] = ..., n: _Optional[int] = ..., depth: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., folds: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class Suggestion(_message.Message):
    __slots__ = ("id", "uri", "score")
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    id: int
    uri: str
    score: float
    def __init__(self, id: _Optional[int] = ..., uri: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class SuggestLabelsResponse(_message.Message):
    __slots__ = ("suggestions", "depth", "method")
    SUGGESTIONS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    suggestions: _containers.RepeatedCompositeFieldContainer[Suggestion]
    depth: str
    method: str
    def __init__(self, suggestions: _Optional[_Iterable[_Union[Suggestion, _Mapping]]] = ..., depth: _Optional[str] = ..., method: _Optional[str] = ...) -> None: ...

class LabelIssuesRequest(_message.Message):
    __slots__ = ("collection", "depths", "methods", "folds", "seed")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DEPTHS_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    FOLDS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    collection: str
    depths: _containers.RepeatedScalarFieldContainer[str]
    methods: _containers.RepeatedScalarFieldContainer[str]
    folds: int
    seed: int
    def __init__(self, collection: _Optional[str] = ..., depths: _Optional[_Iterable[str]] = ..., methods: _Optional[_Iterable[str]] = ..., folds: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class LabelIssue(_message.Message):
    __slots__ = ("id", "uri", "label", "suggested", "score")
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SUGGESTED_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    id: int
    uri: str
    label: str
    suggested: str
    score: float
    def __init__(self, id: _Optional[int] = ..., uri: _Optional[str] = ..., label: _Optional[str] = ..., suggested: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class LabelIssuesResponse(_message.Message):
    __slots__ = ("issues", "method", "depth", "cv_accuracy")
    ISSUES_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    CV_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    issues: _containers.RepeatedCompositeFieldContainer[LabelIssue]
    method: str
    depth: str
    cv_accuracy: float
    def __init__(self, issues: _Optional[_Iterable[_Union[LabelIssue, _Mapping]]] = ..., method: _Optional[str] = ..., depth: _Optional[str] = ..., cv_accuracy: _Optional[float] = ...) -> None: ...

class DuplicatesRequest(_message.Message):
    __slots__ = ("collection", "depth", "threshold")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    collection: str
    depth: str
    threshold: float
    def __init__(self, collection: _Optional[str] = ..., depth: _Optional[str] = ..., threshold: _Optional[float] = ...) -> None: ...

class DuplicateMember(_message.Message):
    __slots__ = ("id", "uri")
    ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    id: int
    uri: str
    def __init__(self, id: _Optional[int] = ..., uri: _Optional[str] = ...) -> None: ...

class DuplicateGroup(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[DuplicateMember]
    def __init__(self, members: _Optional[_Iterable[_Union[DuplicateMember, _Mapping]]] = ...) -> None: ...

class DuplicatesResponse(_message.Message):
    __slots__ = ("groups", "depth", "threshold")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[DuplicateGroup]
    depth: str
    threshold: float
    def __init__(self, groups: _Optional[_Iterable[_Union[DuplicateGroup, _Mapping]]] = ..., depth: _Optional[str] = ..., threshold: _Optional[float] = ...) -> None: ...
