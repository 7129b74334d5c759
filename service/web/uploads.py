"""Bounded reads of request bodies: an image upload is at most `limit` bytes, refused early
from Content-Length and again while streaming (a client can lie about the length)."""

from __future__ import annotations

from starlette.requests import Request


class UploadTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(
            f"upload larger than {limit // (1024 * 1024)} MiB: shrink the image or start "
            "`strata web --max-upload-mb N` with a larger limit"
        )


class EmptyUpload(Exception):
    pass


async def read_bounded(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadTooLarge(limit)
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise EmptyUpload("empty upload: send the image's bytes as the request body")
    return data
