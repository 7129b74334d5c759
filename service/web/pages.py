"""Server-rendered pages (Jinja2, autoescaped); each page's script module does the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from indexer.core.vocabulary import HUMAN, PREDICTED, UNLABELLED
from service import image_files
from service.client import StrataClient, StrataClientError
from service.web import inputs, views
from service.web.security import (
    CSRF_FIELD,
    TOKEN_COOKIE,
    csrf_matches,
    csrf_of,
    set_cookie,
    token_of,
)

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    context.setdefault("collection", None)
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {"csrf": csrf_of(request), "server": request.app.state.gateway.settings.server, **context},
        status_code=status_code,
    )


async def _call(request: Request, work: Any) -> Any:
    return await request.app.state.gateway.call(token_of(request), work)


def _coverage(client: StrataClient, name: str, items: int) -> dict[str, int | None]:
    """Items with a human label, with a predicted one, and with none (ListItems totals)."""
    try:
        return {
            source: int(client.list_items(name, page_size=1, label_source=source).total)
            for source in (HUMAN, PREDICTED, UNLABELLED)
        }
    except StrataClientError as exc:
        if exc.code != "UNIMPLEMENTED":
            raise
    # A server without the Browse service: count from the label export instead.
    rows = client.export_labels(name).labels
    human = {r.id for r in rows if r.source == HUMAN}
    predicted = {r.id for r in rows if r.source == PREDICTED}
    return {
        HUMAN: len(human),
        PREDICTED: len(predicted),
        UNLABELLED: items - len(human | predicted),
    }


async def collections(request: Request) -> Response:
    def work(client: StrataClient) -> list[dict[str, Any]]:
        out = []
        for c in client.list_collections():
            document = views.collection(c)
            document["coverage"] = _coverage(client, c.name, int(c.items))
            out.append(document)
        return out

    return render(request, "collections.html", collections=await _call(request, work))


async def _collection(request: Request) -> dict[str, Any]:
    name = request.path_params["name"]
    return views.collection(await _call(request, lambda c: c.get_collection(name)))


async def collection_home(request: Request) -> Response:
    return RedirectResponse(f"/collections/{quote(request.path_params['name'])}/search", 303)


async def search(request: Request) -> Response:
    item = request.query_params.get("item", "")
    if item:  # refused here, not later in a toast after the page has drawn
        item = str(inputs.item_id(item))
    return render(request, "search.html", collection=await _collection(request), item=item)


async def item(request: Request) -> Response:
    name, item_id = request.path_params["name"], inputs.item_id(request.path_params["id"])
    collection = await _collection(request)
    found = views.item(await _call(request, lambda c: c.get_item(name, item_id)))
    return render(request, "item.html", collection=collection, item=found)


async def map_page(request: Request) -> Response:
    collection = await _collection(request)
    names = [d["name"] for d in collection["depths"]]
    depth = request.query_params.get("depth") or (names[-1] if names else "")
    if names and depth not in names:
        raise inputs.BadRequest(
            f"depth {depth!r} is not one of this collection's: {', '.join(names)}"
        )
    return render(request, "map.html", collection=collection, depth=depth, depths=names)


async def probe(request: Request) -> Response:
    return render(request, "probe.html", collection=await _collection(request))


async def workbench(request: Request) -> Response:
    return render(request, "labels.html", collection=await _collection(request))


async def add(request: Request) -> Response:
    return render(
        request,
        "add.html",
        collection=await _collection(request),
        max_upload=request.app.state.gateway.settings.max_upload_bytes,
        # The CLI's rule for which files are images (service/image_files.py): a folder
        # upload skips, and names, the same files `strata index` skips.
        file_rules={
            "image_suffixes": sorted(image_files.IMAGE_SUFFIXES),
            "unsupported": image_files.UNSUPPORTED_IMAGE_SUFFIXES,
            "unsupported_reason": image_files.UNSUPPORTED_REASON,
            "not_an_image_reason": image_files.NOT_AN_IMAGE_REASON,
        },
    )


# -- the token the gRPC server wants -----------------------------------------------------------


def _safe_next(value: str) -> str:
    # Only a path on this app: never an absolute or scheme-relative URL (open redirect).
    return value if value.startswith("/") and not value.startswith("//") else "/"


async def login(request: Request) -> Response:
    if request.method == "GET":
        return render(
            request,
            "login.html",
            next=_safe_next(request.query_params.get("next", "/")),
            message="",
        )
    form = await request.form()
    target = _safe_next(str(form.get("next", "/")))
    if not csrf_matches(request, str(form.get(CSRF_FIELD, ""))):
        return render(
            request,
            "login.html",
            403,
            next=target,
            message="The form expired: please enter the token again.",
        )
    token = str(form.get("token", "")).strip()
    if not token:
        return render(request, "login.html", 400, next=target, message="Enter a token.")
    if not inputs.usable_token(token):
        return render(
            request,
            "login.html",
            400,
            next=target,
            message="A token is printable ASCII without spaces: check what was pasted.",
        )
    try:
        await request.app.state.gateway.call(token, lambda c: c.list_collections())
    except StrataClientError as exc:
        return render(
            request,
            "login.html",
            401,
            next=target,
            message=f"The server refused this token ({exc.code}).",
        )
    response = RedirectResponse(target, 303)
    set_cookie(request, response, TOKEN_COOKIE, token)
    return response


async def logout(request: Request) -> Response:
    form = await request.form()
    if not csrf_matches(request, str(form.get(CSRF_FIELD, ""))):
        return render(request, "error.html", 403, code="CSRF", message="The form expired.")
    response = RedirectResponse("/", 303)
    response.delete_cookie(TOKEN_COOKIE, path="/")
    return response


def routes() -> list[Route]:
    base = "/collections/{name}"
    return [
        Route("/", collections),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route(base, collection_home),
        Route(f"{base}/search", search),
        Route(base + "/items/{id:int}", item),
        Route(f"{base}/map", map_page),
        Route(f"{base}/probe", probe),
        Route(f"{base}/labels", workbench),
        Route(f"{base}/add", add),
    ]
