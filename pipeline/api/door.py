"""The door: what a request must pass before any work is done for it (a pure ASGI middleware).

In this order, each refusal answered at once, without reading what is left of the body:

1. a ``Content-Length`` over ``CLIPLINE_API_MAX_BODY_BYTES``, or not a number: ``413`` (uvicorn
   answers a Content-Length that is not a number with 400 itself; another server may not);
2. under ``/v1/`` and ``/v1.0/`` (but for the paths named ``keyless``: the webhook has its
   own secret), the API key: looked up, and its rate taken, in a worker thread, before a byte
   of the body is read (``401``, ``429``). The tenant goes into the scope, where
   ``deps.tenant`` finds it;
3. a JSON body on those routes is read here, counted as it streams (chunked or not): ``413`` as
   soon as the count passes the limit. Then ``pipeline.json_limits`` scans it before FastAPI
   parses it: nested too deep is ``422 invalid_request``, naming the body;
4. any other body (the webhook's, a body that is not JSON) is counted as the app reads it, with
   the same ``413``.

A refusal is rendered by the app's own exception handlers (``problems.install``): the door's
answers are the same problems, with the same codes, as the routes'; under a prefix given a
dialect (``/v1.0/``: remove.bg's error shape), by that dialect's renderer.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline import json_limits
from pipeline.api.deps import TENANT_SCOPE_KEY, ApiDeps, authenticate, presented_key
from pipeline.api.problems import Problem
from pipeline.errors import ClipError

KEYED_PREFIX = ("/v1/", "/v1.0/")  # /v1.0/: the remove.bg-compatible route (api.removebg)
SCAN_ON_THE_LOOP_BYTES = 64 * 1024  # a larger body is scanned in a worker thread


class BodyTooLarge(Exception):
    """Raised into the app by ``receive`` once the body passes the limit; the door answers."""


class _Gone(Exception):
    """The client went away while the door read the body: nobody to answer."""


def too_large(limit: int) -> Problem:
    return Problem(413, "body_too_large", "The request body is too large",
                   f"at most {limit} bytes")


class Door:
    def __init__(self, app: ASGIApp, *, api: FastAPI, keyless: Collection[str] = (),
                 dialects: Mapping[str, Callable[[Exception], Any]] | None = None) -> None:
        self.app, self.api, self.keyless = app, api, frozenset(keyless)
        # path prefix -> renders a refusal in that route family's own error shape
        self.dialects = dict(dialects or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        d: ApiDeps = self.api.state.deps
        limit = d.settings.api_max_body_bytes
        try:
            receive = await self._admit(scope, receive, d, limit)
        except (Problem, ClipError, RequestValidationError) as exc:
            await self._refuse(scope, receive, send, exc)
            return
        except _Gone:
            return
        counted = _Counted(receive, send, limit)
        try:
            await self.app(scope, counted.receive, counted.send)
        except BodyTooLarge:
            if counted.started:
                raise
        if counted.over and not counted.started:
            await self._refuse(scope, receive, send, too_large(limit))

    async def _admit(self, scope: Scope, receive: Receive, d: ApiDeps, limit: int) -> Receive:
        """Steps 1 to 3; the ``receive`` the app is to read the body from."""
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise too_large(limit)
        path: str = scope["path"]
        if not path.startswith(KEYED_PREFIX) or path in self.keyless:
            return receive
        key = await presented_key(Request(scope))
        scope[TENANT_SCOPE_KEY] = await run_in_threadpool(authenticate, d, key)
        if not _is_json(headers.get("content-type", "")):
            return receive
        body = await _read(receive, limit)
        try:
            if len(body) > SCAN_ON_THE_LOOP_BYTES:
                await run_in_threadpool(json_limits.check, body)
            else:
                json_limits.check(body)
        except json_limits.JsonLimitExceeded as exc:
            raise RequestValidationError([{"type": "json_invalid", "loc": ("body",),
                                           "msg": str(exc), "input": {}}]) from None
        except ValueError:
            pass  # not even text: FastAPI's parser refuses it as it always did
        return _replay(body, receive)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """Answer as the app's handler for ``exc`` would (or the path's dialect)."""
        render = next((r for p, r in self.dialects.items() if scope["path"].startswith(p)), None)
        if render is not None:
            await render(exc)(scope, receive, send)
            return
        handler = next(found for cls in type(exc).__mro__
                       if (found := self.api.exception_handlers.get(cls)) is not None)
        response: Any = handler(Request(scope, receive), exc)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)


def _is_json(content_type: str) -> bool:
    """Whether FastAPI parses a body of this type as JSON."""
    media = content_type.partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _read(receive: Receive, limit: int) -> bytes:
    """The whole body, refused as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app the body already read, in one message, then goes on
    with the connection's own (a disconnect, say)."""
    pending = [body]

    async def replayed() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replayed


class _Counted:
    """``receive`` and ``send`` for the app: the body counted as the app reads it."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive, self._send, self.limit = receive, send, limit
        self.size, self.over, self.started = 0, False, False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                self.over = True
                raise BodyTooLarge
        return message

    async def send(self, message: Message) -> None:
        if self.over and not self.started:
            return  # the app's answer to a body it could not finish: the door answers 413
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
