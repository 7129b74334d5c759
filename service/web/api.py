"""JSON and binary endpoints under /api: each is one or a few StrataClient calls.

Writes (labels, deletes, uploads, probes) need the CSRF header (security.py). Nothing here
takes a path on the server's disk: images travel as request bodies, items by id."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.client import ImageToAdd, StrataClient, StrataClientError
from service.web import inputs, views
from service.web.gateway import Gateway
from service.web.inputs import BadRequest, json_object
from service.web.security import token_of
from service.web.uploads import read_bounded

_MAX_NAME = 1024  # characters of an uploaded file's name kept as its uri


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _call(request: Request, work: Any, slow: bool = False) -> Any:
    """`slow`: a call that takes minutes on large collections (probes, label predictions,
    projections) gets the long timeout, others the quick one (gateway.py)."""
    return await _gateway(request).call(token_of(request), work, slow)


def _int(request: Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{key}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise BadRequest(f"{key}={value} is outside {low}..{high}")
    return value


async def _image_body(request: Request) -> bytes:
    """An image sent as the raw request body, within the upload limit."""
    # Not "application/x-www-form-urlencoded": curl --data-binary and urllib send raw bytes
    # under that type by default.
    if request.headers.get("content-type", "").startswith("multipart/"):
        raise BadRequest(
            "send the image's raw bytes as the request body, not a form "
            "(curl --data-binary @cat.jpg, not -F)"
        )
    return await read_bounded(request, _gateway(request).settings.max_upload_bytes)


def _list(request: Request, key: str) -> list[str]:
    return [v.strip() for v in request.query_params.get(key, "").split(",") if v.strip()]


def _metadata(request: Request) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in request.query_params.getlist("meta"):
        key, sep, rest = value.partition("=")
        if value and not sep:
            raise BadRequest(f"metadata filter {value!r} is not KEY=VALUE")
        if key:
            pairs[key] = rest
    return pairs


async def _json_body(request: Request) -> dict[str, Any]:
    return json_object(await request.body())


# -- search ---------------------------------------------------------------------------------


async def search(request: Request) -> Response:
    """POST: the body is the query image; GET ?item=ID: search by a stored item."""
    name = request.path_params["name"]
    k = _int(request, "k", 12, 1, 100)
    labels_any = _list(request, "labels")
    metadata = _metadata(request)
    depths = _list(request, "depths")
    image: bytes | None = None
    if request.method == "POST":
        image = await _image_body(request)
        query: Any = image
    else:
        query = _int(request, "item", 0, 1, inputs.MAX_ID)
        if not query:
            raise BadRequest("search by ?item=ID, or POST the query image as the body")

    def work(client: StrataClient) -> dict[str, Any]:
        result = client.search(
            name, [query], depths=depths, k=k, labels_any=labels_any, metadata=metadata
        )[0]
        tags: list[dict[str, Any]] = []
        picture = image
        if picture is None:  # a stored item: tag its thumbnail (pages never hold originals)
            found = client.get_thumbnails(name, [query]).thumbnails
            picture = found[0].data if found and found[0].data else None
        if picture is not None:
            tags = views.tags(client.classify([("query", picture)], k=5)[0])
        return {"query": result.query, "depths": views.hits(result), "tags": tags}

    return JSONResponse(await _call(request, work))


# -- thumbnails, projection, labels for the map ----------------------------------------------


async def thumbnail(request: Request) -> Response:
    name, item_id = request.path_params["name"], inputs.item_id(request.path_params["id"])
    answer = await _call(request, lambda c: c.get_thumbnails(name, [item_id]))
    found = [t for t in answer.thumbnails if t.id == item_id and t.data]
    if not found:
        return JSONResponse(
            {
                "error": {
                    "code": "NOT_FOUND",
                    "message": f"item {item_id} has no thumbnail yet "
                    f"(run `strata items backfill-thumbnails --collection {name}`)",
                }
            },
            status_code=404,
        )
    return Response(
        found[0].data,
        media_type=found[0].media_type or "image/jpeg",
        headers={"Cache-Control": "private, max-age=300"},
    )


async def projection(request: Request) -> Response:
    """The Projection's packed columns as they came: N int64 ids, then N (x, y) float32."""
    name = request.path_params["name"]
    depth = request.query_params.get("depth", "")
    method = request.query_params.get("method", "")
    answer = await _call(
        request, lambda c: c.get_projection(name, depth=depth, method=method), slow=True
    )
    return Response(
        bytes(answer.ids) + bytes(answer.xy),
        media_type="application/octet-stream",
        headers={
            "X-Strata-Count": str(answer.count),
            "X-Strata-Depth": answer.depth,
            "X-Strata-Method": answer.method,
            "X-Strata-Version": str(answer.collection_version),
            "Cache-Control": "no-store",
        },
    )


async def labels(request: Request) -> Response:
    name = request.path_params["name"]
    answer = await _call(request, lambda c: c.export_labels(name))
    return JSONResponse(views.compact_labels(answer.labels))


async def set_labels(request: Request) -> Response:
    """{"ids": [...], "label": "cat"}: those items' human labels become exactly [label]."""
    name = request.path_params["name"]
    body = await _json_body(request)
    ids = inputs.ids(body)
    label = body.get("label")
    if not isinstance(label, str) or not label.strip():
        raise BadRequest('"label" must be a non-empty class name')
    written = await _call(request, lambda c: c.set_labels(name, {i: [label.strip()] for i in ids}))
    return JSONResponse({"labelled": ids, "label": label.strip(), "rows": written})


async def delete_items(request: Request) -> Response:
    name = request.path_params["name"]
    ids = inputs.ids(await _json_body(request))
    deleted = await _call(request, lambda c: c.delete_items(name, ids))
    return JSONResponse({"deleted": deleted})


async def list_items(request: Request) -> Response:
    name = request.path_params["name"]
    size = _int(request, "page_size", 60, 1, 1000)
    token = request.query_params.get("page_token", "")
    source = request.query_params.get("label_source", "")
    order = request.query_params.get("order_by", "id")
    answer = await _call(
        request,
        lambda c: c.list_items(
            name,
            page_size=size,
            page_token=token,
            order_by=order,
            label_source=source,
            labels_any=_list(request, "labels"),
            metadata=_metadata(request),
        ),
    )
    return JSONResponse(
        {
            "items": [views.item(i) for i in answer.items],
            "next_page_token": answer.next_page_token,
            "total": int(answer.total),
        }
    )


# -- uploads ----------------------------------------------------------------------------------


async def add_image(request: Request) -> Response:
    """One image per request (the browser loops, so it can show progress); ?name= is the
    file's name in the user's folder, kept as the item's uri."""
    name = request.path_params["name"]
    uri = request.query_params.get("name", "").strip()[:_MAX_NAME] or "upload"
    data = await _image_body(request)
    labels_given = _list(request, "labels")
    results = await _call(
        request,
        lambda c: list(c.add_images(name, [ImageToAdd(f"upload/{uri}", data, labels_given)])),
    )
    result = results[0]
    document: dict[str, Any] = {"uri": result.uri, "id": int(result.id), "status": result.status}
    if result.status == "failed":
        document["error"] = {
            "code": result.error.code,
            "message": result.error.message,
            "hint": result.error.hint,
        }
    return JSONResponse(document)


# -- probes and the label workbench -----------------------------------------------------------


async def probe(request: Request) -> Response:
    """{"depth": "parts"}: cross-validate and store one depth's probe (the page calls this
    once per depth, so it can show progress)."""
    name = request.path_params["name"]
    body = await _json_body(request)
    depth = body.get("depth", "")
    if not isinstance(depth, str):
        raise BadRequest('"depth" must be a depth name')
    answer = await _call(request, lambda c: c.probe(name, [depth] if depth else []), slow=True)
    return JSONResponse({"depths": [views.probe(d) for d in answer]})


async def suggest(request: Request) -> Response:
    """The suggest queue: the items most worth labelling next, each with the stored probe's
    prediction when there is one."""
    name = request.path_params["name"]
    n = _int(request, "n", 20, 1, 200)

    def work(client: StrataClient) -> dict[str, Any]:
        answer = client.suggest_labels(name, n)
        ids = [int(s.id) for s in answer.suggestions]
        predicted: dict[int, tuple[str, float]] = {}
        if ids:
            try:
                probes = client.predict_probe(name, ids=ids)
                for p in probes.predictions:
                    if p.scores:
                        predicted[int(p.id)] = (p.scores[0].label, float(p.scores[0].score))
            except StrataClientError:
                pass  # no stored probe yet: the queue still works, without predictions
        classes = views.label_classes(client.export_labels(name).labels)
        return {
            "depth": answer.depth,
            "method": answer.method,
            "classes": classes,
            "items": [
                {
                    "id": int(s.id),
                    "uri": s.uri,
                    "score": round(float(s.score), 4),
                    "predicted": predicted.get(int(s.id), ("", 0.0))[0],
                    "confidence": round(predicted.get(int(s.id), ("", 0.0))[1], 4),
                }
                for s in answer.suggestions
            ],
        }

    return JSONResponse(await _call(request, work, slow=True))


async def issues(request: Request) -> Response:
    name = request.path_params["name"]

    def work(client: StrataClient) -> dict[str, Any]:
        answer = client.label_issues(name)
        return {
            "method": answer.method,
            "depth": answer.depth,
            "classes": views.label_classes(client.export_labels(name).labels),
            "items": [
                {
                    "id": int(i.id),
                    "uri": i.uri,
                    "label": i.label,
                    "suggested": i.suggested,
                    "score": round(float(i.score), 4),
                }
                for i in answer.issues
            ],
        }

    return JSONResponse(await _call(request, work, slow=True))


async def duplicates(request: Request) -> Response:
    name = request.path_params["name"]
    raw = request.query_params.get("threshold", "")
    try:
        threshold = float(raw) if raw else 0.0
    except ValueError:
        raise BadRequest(f"threshold={raw!r} is not a number") from None
    answer = await _call(request, lambda c: c.duplicates(name, threshold=threshold), slow=True)
    return JSONResponse(
        {
            "depth": answer.depth,
            "threshold": round(float(answer.threshold), 4),
            "groups": [[{"id": int(m.id), "uri": m.uri} for m in g.members] for g in answer.groups],
        }
    )


def routes() -> list[Route]:
    base = "/api/collections/{name}"
    return [
        Route(f"{base}/search", search, methods=["GET", "POST"]),
        Route(base + "/thumbnails/{id:int}", thumbnail),
        Route(f"{base}/projection", projection),
        Route(f"{base}/labels", labels, methods=["GET"]),
        Route(f"{base}/labels", set_labels, methods=["POST"]),
        Route(f"{base}/items", list_items),
        Route(f"{base}/delete", delete_items, methods=["POST"]),
        Route(f"{base}/images", add_image, methods=["POST"]),
        Route(f"{base}/probe", probe, methods=["POST"]),
        Route(f"{base}/suggest", suggest),
        Route(f"{base}/issues", issues),
        Route(f"{base}/duplicates", duplicates),
    ]
