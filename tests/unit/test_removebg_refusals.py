"""The remove.bg route's refusals, door's and its own, in remove.bg's error shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pipeline.api.door import too_large
from pipeline.api.problems import Problem
from pipeline.api.removebg import refusal
from pipeline.errors import LedgerUnavailable, NotAnImage
from pipeline.removebg_params import Refused


def shape(response: JSONResponse) -> tuple[int, dict[str, Any]]:
    body = json.loads(bytes(response.body))
    assert list(body) == ["errors"] and len(body["errors"]) == 1
    assert response.media_type == "application/json"
    return response.status_code, body["errors"][0]


@pytest.mark.parametrize(("exc", "status", "code"), [
    (Problem(401, "unauthorized", "An API key is required"), 403, "auth_failed"),
    (too_large(1000), 413, "file_too_large"),
    (Refused("unknown_parameter", "Unknown parameter", "not a remove.bg parameter: x"), 400,
     "unknown_parameter"),
    (RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": "too deep"}]),
     400, "invalid_body"),
    (NotAnImage("text"), 400, "not_an_image"),
    (LedgerUnavailable("down"), 503, "ledger_unavailable"),
])
def test_each_refusal_has_remove_bg_status_and_code(exc: Exception, status: int,
                                                    code: str) -> None:
    found, first = shape(refusal(exc))
    assert (found, first["code"]) == (status, code)
    assert first["title"]


def test_over_the_rate_is_429_with_retry_after() -> None:
    response = refusal(Problem(429, "rate_limited", "Too many requests", "retry in 0.4 s",
                               retry_after=0.4))
    status, first = shape(response)
    assert (status, first["code"], response.headers["retry-after"]) == (
        429, "rate_limit_exceeded", "1")
    assert "retry_after" not in first


def test_a_result_not_ready_names_the_job_to_poll() -> None:
    response = refusal(Problem(504, "result_pending", "The result is not ready yet",
                               job_id="j1", job_url="/v1/jobs/j1"))
    status, first = shape(response)
    assert (status, first["job_id"], response.headers["location"]) == (504, "j1", "/v1/jobs/j1")
