"""Cookies, CSRF and response headers.

- The gRPC bearer token the user types lives only in an HttpOnly, SameSite=Strict cookie
  (Secure when the page came over TLS); page scripts never see it.
- CSRF: a random token per browser in an HttpOnly cookie, printed into each page's
  <meta name="csrf-token">; every unsafe request must echo it in the X-CSRF-Token header
  (or the `csrf` form field of the login form), and a cross-origin Origin is refused.
- A strict Content-Security-Policy: scripts, styles and fetches only from the app itself.
- Only the host names the app answers to (config.allowed_hosts): on loopback, a page whose
  name was rebound to 127.0.0.1 gets nothing (DNS rebinding).
"""

from __future__ import annotations

import hmac
import secrets

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.web.config import host_name
from service.web.inputs import usable_token

TOKEN_COOKIE = "strata_token"
CSRF_COOKIE = "strata_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Paths whose handler checks the CSRF form field itself (plain HTML forms).
FORM_PATHS = frozenset({"/login", "/logout"})

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; "
    "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def token_of(request: Request) -> str | None:
    """The browser's token; a cookie gRPC could not carry (only set by hand) counts as none."""
    token = request.cookies.get(TOKEN_COOKIE) or None
    return token if token is not None and usable_token(token) else None


def csrf_of(request: Request) -> str:
    return str(request.state.csrf)


def csrf_matches(request: Request, submitted: str | None) -> bool:
    expected = request.cookies.get(CSRF_COOKIE)
    return bool(expected and submitted) and hmac.compare_digest(
        str(expected).encode(), str(submitted).encode()
    )


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


class SecurityMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        allowed = request.app.state.gateway.settings.allowed_hosts
        host = host_name(request.headers.get("host", ""))
        if allowed is not None and host not in allowed:
            return JSONResponse(
                {
                    "error": {
                        "code": "HOST",
                        "message": f"this app does not answer to the name {host!r}: open it "
                        "by one of its own names (127.0.0.1, localhost), or start `strata "
                        f"web` with --allowed-host {host or 'NAME'}",
                    }
                },
                status_code=400,
            )
        existing = request.cookies.get(CSRF_COOKIE)
        request.state.csrf = existing or secrets.token_urlsafe(32)
        if request.method not in SAFE_METHODS:
            if not _same_origin(request):
                return _refuse("cross-origin request refused")
            header_ok = csrf_matches(request, request.headers.get(CSRF_HEADER))
            if not header_ok and request.url.path not in FORM_PATHS:
                return _refuse(
                    "missing or wrong CSRF token: reload the page and try again "
                    "(send the page's csrf-token in the X-CSRF-Token header)"
                )
        response = await call_next(request)
        if existing is None:
            set_cookie(request, response, CSRF_COOKIE, request.state.csrf)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response


def _refuse(message: str) -> Response:
    return JSONResponse({"error": {"code": "CSRF", "message": message}}, status_code=403)
