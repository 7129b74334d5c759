"""The ASGI app: pages, /api endpoints, static files, /healthz; error handling in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from service.client import StrataClientError
from service.web import api, pages
from service.web.config import WebSettings
from service.web.gateway import Gateway, http_status
from service.web.inputs import BadRequest
from service.web.security import SecurityMiddleware
from service.web.uploads import EmptyUpload, UploadTooLarge

STATIC = Path(__file__).parent / "static"


async def healthz(request: Request) -> Response:
    """200 once the gRPC server answers its health check as SERVING, 503 before."""
    if await request.app.state.gateway.healthy():
        return PlainTextResponse("ok")
    return PlainTextResponse(
        f"cannot reach a serving Strata at {request.app.state.gateway.settings.server}", 503
    )


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _grpc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StrataClientError)
    status = http_status(exc)
    if _is_api(request):
        return JSONResponse({"error": {"code": exc.code, "message": exc.details}}, status)
    if exc.code in ("UNAUTHENTICATED", "PERMISSION_DENIED") and request.method == "GET":
        return RedirectResponse(f"/login?next={quote(request.url.path)}", 303)
    return pages.render(request, "error.html", status, code=exc.code, message=exc.details)


async def _bad_input(request: Request, exc: Exception) -> Response:
    status = 413 if isinstance(exc, UploadTooLarge) else 400
    code = "TOO_LARGE" if status == 413 else "INVALID_ARGUMENT"
    if _is_api(request):
        return JSONResponse({"error": {"code": code, "message": str(exc)}}, status)
    return pages.render(request, "error.html", status, code=code, message=str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (an unknown page, a method not allowed) in the app's shape."""
    assert isinstance(exc, HTTPException)
    code = "NOT_FOUND" if exc.status_code == 404 else f"HTTP_{exc.status_code}"
    message = "no such page" if exc.status_code == 404 else str(exc.detail)
    if _is_api(request):
        return JSONResponse({"error": {"code": code, "message": message}}, exc.status_code)
    return pages.render(request, "error.html", exc.status_code, code=code, message=message)


async def _unexpected(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback (by Starlette, after this answer), answered without it."""
    message = "the web app failed on this request; its log has the details"
    if _is_api(request):
        return JSONResponse({"error": {"code": "INTERNAL", "message": message}}, 500)
    return pages.render(request, "error.html", 500, code="INTERNAL", message=message)


def create_app(settings: WebSettings) -> Starlette:
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.gateway = gateway
        yield
        gateway.close()

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            *pages.routes(),
            *api.routes(),
            Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
        ],
        middleware=[Middleware(SecurityMiddleware)],
        exception_handlers={
            StrataClientError: _grpc_error,
            BadRequest: _bad_input,
            HTTPException: _http_error,
            Exception: _unexpected,
            UploadTooLarge: _bad_input,
            EmptyUpload: _bad_input,
        },
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
