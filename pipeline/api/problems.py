"""Errors as ``application/problem+json`` (RFC 9457), each with a stable ``code``.

Clients branch on ``code`` (and the HTTP status); ``detail`` is for people. Every failure the
API can answer with is mapped here, once.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline import logs
from pipeline.errors import (
    BatchNotFound,
    ClipError,
    IdempotencyConflict,
    JobNotFound,
    JobNotSucceeded,
    LayersNotRecorded,
    OutputNotAllowed,
    TransitionRefused,
    UsageError,
)

MEDIA_TYPE = "application/problem+json"
# Usage errors that are not 422: an output outside the tenant's allowed outputs is refused as
# a source outside its allowlist is (the tenant may not, whatever it sends).
USAGE_STATUS = {OutputNotAllowed.reason: 403}
log = logs.get(__name__)


class Problem(Exception):
    def __init__(self, status: int, code: str, title: str, detail: str | None = None,
                 **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.code, self.title, self.detail, self.extra = (
            status, code, title, detail, extra)


def problem_response(status: int, code: str, title: str, detail: str | None = None,
                     **extra: Any) -> JSONResponse:
    body = {"type": f"urn:clipline:problem:{code}", "title": title, "status": status,
            "code": code, **({"detail": detail} if detail else {}), **extra}
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE)


def install(app: FastAPI) -> None:
    """Map every failure the API can answer with onto its problem response."""
    app.add_exception_handler(Exception, _unexpected)
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.code, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return problem_response(422, "invalid_request", "The request is not valid",
                                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                          for e in errors), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(JobNotFound)
    @app.exception_handler(BatchNotFound)
    async def _missing(_: Request, exc: JobNotFound | BatchNotFound) -> JSONResponse:
        # Another tenant's id answers exactly like an id that never existed.
        return problem_response(404, exc.reason, f"No such {exc.subject}", str(exc))

    @app.exception_handler(TransitionRefused)
    @app.exception_handler(JobNotSucceeded)  # recompose: see pipeline.recompose
    @app.exception_handler(LayersNotRecorded)
    async def _refused(
        _: Request, exc: TransitionRefused | JobNotSucceeded | LayersNotRecorded
    ) -> JSONResponse:
        return problem_response(409, exc.reason, "Not possible in the job's state", str(exc))

    @app.exception_handler(IdempotencyConflict)
    async def _conflict(_: Request, exc: IdempotencyConflict) -> JSONResponse:
        return problem_response(409, "idempotency_conflict",
                                "Idempotency key already used for another request", str(exc),
                                fields=exc.fields)

    @app.exception_handler(UsageError)
    async def _usage(_: Request, exc: UsageError) -> JSONResponse:
        return problem_response(USAGE_STATUS.get(exc.reason, 422), exc.reason,
                                "The request cannot be honoured", str(exc))

    @app.exception_handler(ClipError)
    async def _clip(_: Request, exc: ClipError) -> JSONResponse:
        if exc.transient:
            return problem_response(503, exc.reason, "A service Clipline needs is unavailable",
                                    exc.message, headers_hint="retry later")
        return problem_response(422, exc.reason, "The request cannot be honoured", exc.message)


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback; the client gets a problem, never a traceback. Tests
    fail on any 5xx, so client data that reaches here is a check missing at the door."""
    log.error("api_unexpected_error", error=type(exc).__name__, exc_info=exc)
    return problem_response(500, "internal_error", "Internal error",
                            "the error is logged; please report it")
