"""Client methods for the Insight service (Grad-CAM explanations, channels), mixed into
StrataClient.

with StrataClient() as client:
    explained = client.explain("photos", [("cat.jpg", data)], depth="semantics")
    report = client.channels("photos", "parts", channels=4, top=9)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc

from service.generated.strata.v1 import insight_pb2 as pb
from service.generated.strata.v1 import insight_pb2_grpc as pb_grpc
from service.generated.strata.v1 import strata_pb2


class InsightClientMixin:
    """Needs `_channel` (a grpc.Channel) and `_call(method, request)` from its host."""

    _channel: grpc.Channel
    _insight_stub: pb_grpc.InsightStub | None = None

    def _call(self, method: Any, request: Any) -> Any:
        raise NotImplementedError

    @property
    def insight_stub(self) -> pb_grpc.InsightStub:
        if self._insight_stub is None:
            self._insight_stub = pb_grpc.InsightStub(self._channel)
        return self._insight_stub

    def explain(
        self,
        collection: str,
        images: Sequence[tuple[str, bytes]],
        *,
        depth: str = "",
        label: str = "",
        imagenet_class: str = "",
    ) -> list[pb.Explanation]:
        """A Grad-CAM heatmap per image for a probe label, an ImageNet class, or (neither)
        each image's top-1 ImageNet class."""
        request = pb.ExplainRequest(
            collection=collection,
            images=[strata_pb2.NamedImage(uri=u, image=d) for u, d in images],
            depth=depth,
        )
        if label:
            request.label = label
        if imagenet_class:
            request.imagenet_class = imagenet_class
        return list(self._call(self.insight_stub.Explain, request).explanations)

    def channels(
        self, collection: str, depth: str, *, channels: int = 0, top: int = 0
    ) -> pb.ChannelsResponse:
        request = pb.ChannelsRequest(collection=collection, depth=depth, channels=channels, top=top)
        return self._call(self.insight_stub.Channels, request)
