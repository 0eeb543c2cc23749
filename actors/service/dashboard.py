"""The dashboard's static page, served by the control server without the token (it holds none).

The page asks for the token and sends it as an ``Authorization`` header on every API call and on
the event stream (read with ``fetch``, since ``EventSource`` cannot send headers), so the token is
never in a URL, a cookie or the served files. A strict Content-Security-Policy allows only this
origin's own script, style and connections.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["PUBLIC_PATHS", "dashboard_routes"]

_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
    "/static/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
}
_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}

PUBLIC_PATHS = frozenset(_FILES)


def dashboard_routes() -> list[Route]:
    """A route per static file, read from the installed package once at start."""
    static = resources.files("actors.service") / "static"
    routes = []
    for path, (name, media_type) in _FILES.items():
        body = (static / name).read_bytes()

        def serve(request: Request, body: bytes = body, media_type: str = media_type) -> Response:
            return Response(body, media_type=media_type, headers=_HEADERS)

        routes.append(Route(path, serve, methods=["GET"]))
    return routes
