"""Client methods for the Labels service, mixed into StrataClient.

with StrataClient() as client:
    client.set_labels("photos", {7: ["cat"]})
    report = client.probe("photos")
    predicted = client.predict_labels("photos")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from service.generated.strata.v1 import labels_pb2 as pb
from service.generated.strata.v1 import labels_pb2_grpc as pb_grpc
from service.generated.strata.v1 import strata_pb2


class LabelsClientMixin:
    """Needs `_channel` (a grpc.Channel) and `_call(method, request)` from its host."""

    _channel: grpc.Channel
    _labels_stub: pb_grpc.LabelsStub | None = None

    def _call(self, method: Any, request: Any) -> Any:
        raise NotImplementedError

    @property
    def labels_stub(self) -> pb_grpc.LabelsStub:
        if self._labels_stub is None:
            self._labels_stub = pb_grpc.LabelsStub(self._channel)
        return self._labels_stub

    # -- labels ---------------------------------------------------------------------------

    def set_labels(self, collection: str, labels: Mapping[int, Sequence[str] | str]) -> int:
        """Each item's human labels become exactly the given ones; returns rows written."""
        items = [
            pb.LabelAssignment(id=item_id, labels=[names] if isinstance(names, str) else names)
            for item_id, names in labels.items()
        ]
        request = pb.SetLabelsRequest(collection=collection, items=items)
        return int(self._call(self.labels_stub.SetLabels, request).labels)

    def clear_labels(
        self, collection: str, ids: Sequence[int] | None = None, source: str = ""
    ) -> int:
        """Clear the labels of `ids`, or of every item when ids is None."""
        request = pb.ClearLabelsRequest(
            collection=collection, ids=list(ids or ()), all=ids is None, source=source
        )
        return int(self._call(self.labels_stub.ClearLabels, request).cleared)

    def import_labels(
        self, collection: str, csv_text: str, key: str = ""
    ) -> pb.ImportLabelsResponse:
        request = pb.ImportLabelsRequest(collection=collection, csv=csv_text, key=key)
        return self._call(self.labels_stub.ImportLabels, request)

    def export_labels(self, collection: str, source: str = "") -> pb.ExportLabelsResponse:
        request = pb.ExportLabelsRequest(collection=collection, source=source)
        return self._call(self.labels_stub.ExportLabels, request)

    # -- probes ---------------------------------------------------------------------------

    def probe(
        self, collection: str, depths: Sequence[str] = (), folds: int = 0, seed: int = 0
    ) -> list[pb.DepthProbe]:
        request = pb.ProbeRequest(
            collection=collection, depths=list(depths), folds=folds, seed=seed
        )
        return list(self._call(self.labels_stub.Probe, request).depths)

    def predict_probe(
        self,
        collection: str,
        *,
        ids: Sequence[int] = (),
        images: Sequence[tuple[str, bytes]] = (),
        depth: str = "",
    ) -> pb.PredictProbeResponse:
        request = pb.PredictProbeRequest(
            collection=collection,
            depth=depth,
            ids=list(ids),
            images=[strata_pb2.NamedImage(uri=u, image=d) for u, d in images],
        )
        return self._call(self.labels_stub.PredictProbe, request)

    # -- bootstrapping --------------------------------------------------------------------

    def predict_labels(
        self,
        collection: str,
        *,
        depths: Sequence[str] = (),
        methods: Sequence[str] = (),
        folds: int = 0,
        seed: int = 0,
        dry_run: bool = False,
    ) -> pb.PredictLabelsResponse:
        request = pb.PredictLabelsRequest(
            collection=collection,
            depths=list(depths),
            methods=list(methods),
            folds=folds,
            seed=seed,
            dry_run=dry_run,
        )
        return self._call(self.labels_stub.PredictLabels, request)

    def suggest_labels(
        self,
        collection: str,
        n: int = 10,
        *,
        depth: str = "",
        metadata: Mapping[str, str] | None = None,
        folds: int = 0,
        seed: int = 0,
    ) -> pb.SuggestLabelsResponse:
        """The `n` (at least 1) unlabelled items most worth labelling next. On the wire n=0
        means the server's default, so an explicit 0 is refused here rather than sent."""
        if n < 1:
            raise ValueError(f"n must be at least 1 (the number of suggestions), got {n}")
        request = pb.SuggestLabelsRequest(
            collection=collection,
            n=n,
            depth=depth,
            metadata=dict(metadata or {}),
            folds=folds,
            seed=seed,
        )
        return self._call(self.labels_stub.SuggestLabels, request)

    def label_issues(
        self,
        collection: str,
        *,
        depths: Sequence[str] = (),
        methods: Sequence[str] = (),
        folds: int = 0,
        seed: int = 0,
    ) -> pb.LabelIssuesResponse:
        request = pb.LabelIssuesRequest(
            collection=collection,
            depths=list(depths),
            methods=list(methods),
            folds=folds,
            seed=seed,
        )
        return self._call(self.labels_stub.LabelIssues, request)

    def duplicates(
        self, collection: str, *, depth: str = "", threshold: float | None = None
    ) -> pb.DuplicatesResponse:
        """Groups of items whose cosine similarity at `depth` is at least `threshold`, a
        cosine in (0, 1]. None means the server's default for that depth
        (DEFAULT_DUPLICATE_THRESHOLDS, or calibrated on the collection); so does 0.0, which
        is how the wire says "not given" (the web app sends it so)."""
        sent = 0.0 if threshold is None else threshold
        request = pb.DuplicatesRequest(collection=collection, depth=depth, threshold=sent)
        return self._call(self.labels_stub.Duplicates, request)
