"""``/ui``: the review page, one static page over the JSON API (no build step, nothing fetched
from elsewhere).

The shell (HTML, script, style) is the only thing served without a key: it holds no data. The
page asks for an API key, keeps it in the tab's ``sessionStorage`` (gone when the tab closes,
never in a URL) and sends it as ``Authorization: Bearer`` on every call to ``/v1``, where the
door checks it like any client's. What it calls: ``GET /v1/batches`` and ``/v1/batches/{id}``,
``GET /v1/jobs`` (per batch and status), ``GET /v1/dead-letters``,
``POST /v1/dead-letters/redrive``, ``GET /v1/jobs/{id}`` and ``/v1/jobs/{id}/preview/{kind}``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import RedirectResponse

router = APIRouter(prefix="/ui", include_in_schema=False)
STATIC = Path(__file__).with_name("static")
FILES = {"index.html": "text/html; charset=utf-8",
         "review.js": "text/javascript; charset=utf-8",
         "review.css": "text/css; charset=utf-8",
         "icon.svg": "image/svg+xml"}
# Everything from this origin, nothing inline, images from the previews the script fetches.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _file(name: str) -> Response:
    return Response(_read(name), media_type=FILES[name], headers=HEADERS)


@router.get("")
def shell_redirect() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/")
def shell() -> Response:
    return _file("index.html")


@router.get("/{name}")
def static_file(name: str) -> Response:
    """The shell's script, style and icon; any other name is 404."""
    if name not in FILES or name == "index.html":
        raise HTTPException(404, "No such file")
    return _file(name)
