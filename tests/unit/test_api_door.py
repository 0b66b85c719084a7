"""The API's door (``pipeline.api.door``), driven as ASGI: which refusals come before the body is
read, how much of a body is read before a 413, and that the blocking routes run off the loop.

Each request's body is a stream of chunks whose reads are counted: "read none of it" is exact.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from pipeline.adapters.ledger.memory import MemoryLedger
from pipeline.adapters.queue.memory import MemoryQueue
from pipeline.api import batches, events, jobs
from pipeline.api.app import create_app
from pipeline.api.deps import ApiDeps
from pipeline.errors import LedgerUnavailable
from pipeline.settings import Settings
from pipeline.tenants import Tenant

KEY, SECRET, LIMIT = "clp_good", "hook-secret", 100_000
CHUNK = 64 * 1024
JOB = {"source": {"bucket": "photos", "key": "a.png"}}


@dataclass
class Tenants:
    """The two ``TenantStore`` calls the API makes, counted."""

    lookups: list[str] = field(default_factory=list)
    down: bool = False

    def tenant_for_key(self, key: str) -> Tenant | None:
        self.lookups.append(key)
        if self.down:
            raise LedgerUnavailable("the tenants' database does not answer")
        return Tenant("acme", "Acme", ("photos/",)) if key == KEY else None

    def get(self, tenant_id: str) -> Tenant | None:
        return Tenant("acme", "Acme", ("photos/",)) if tenant_id == "acme" else None


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    chunks_read: int

    def json(self) -> Any:
        return json.loads(self.body)


def call(app: FastAPI, method: str, path: str, chunks: Iterator[bytes] | list[bytes] | None = None,
         headers: dict[str, str] | None = None) -> Answer:
    """One request through the whole ASGI stack; the body as chunks (chunked transfer unless
    the headers name a Content-Length); how many chunks the app (or the door) pulled."""
    body = iter(chunks or [])
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        chunk = next(body, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        read += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    start = next(m for m in sent if m["type"] == "http.response.start")
    return Answer(start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
                  b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"),
                  read)


def endless(size: int = CHUNK) -> Iterator[bytes]:
    """A body that never ends: only a door that stops reading answers."""
    chunk = b" " * size
    while True:
        yield chunk


@pytest.fixture
def api(tmp_path: Path) -> tuple[FastAPI, Tenants, MemoryLedger]:
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nbucket = "photos"\ntenant = "acme"\n')
    settings = Settings(api_max_body_bytes=LIMIT, events_webhook_secret=SECRET,  # type: ignore[arg-type]
                        events_rules_file=rules, api_rate_burst=3, api_rate_per_second=0.001)
    tenants, ledger = Tenants(), MemoryLedger()
    return create_app(ApiDeps(settings=settings, ledger=ledger, tenants=tenants,
                              queue=MemoryQueue())), tenants, ledger


def keyed(**more: str) -> dict[str, str]:
    return {"authorization": f"Bearer {KEY}", "content-type": "application/json", **more}


def assert_problem(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, answer.body
    assert answer.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = answer.json()
    assert problem["code"] == code and problem["status"] == status
    return problem


@pytest.mark.parametrize("headers", [
    {"content-type": "application/json"},
    {"authorization": "Bearer clp_wrong", "content-type": "application/json"},
    {"x-api-key": "clp_wrong", "content-type": "application/octet-stream"},
], ids=["no-key", "wrong-bearer", "wrong-x-api-key"])
def test_a_request_without_a_live_key_gets_401_having_read_none_of_its_body(
        api: Any, headers: dict[str, str]) -> None:
    app, _, ledger = api
    answer = call(app, "POST", "/v1/jobs", endless(), headers)
    assert_problem(answer, 401, "unauthorized")
    assert answer.chunks_read == 0
    assert ledger.list_jobs() == []


def test_a_key_over_its_rate_gets_429_having_read_none_of_its_body(api: Any) -> None:
    app, tenants, _ = api
    for _ in range(3):  # the burst
        assert call(app, "GET", "/v1/jobs", headers=keyed()).status == 200
    answer = call(app, "POST", "/v1/jobs", endless(), keyed())
    assert_problem(answer, 429, "rate_limited")
    assert answer.chunks_read == 0
    assert tenants.lookups == [KEY] * 4  # once a request: the route reuses the door's answer


def test_a_key_that_cannot_be_checked_is_503_as_from_a_route(api: Any) -> None:
    app, tenants, _ = api
    tenants.down = True
    answer = call(app, "POST", "/v1/jobs", endless(), keyed())
    problem = assert_problem(answer, 503, "ledger_unavailable")
    assert answer.chunks_read == 0 and "does not answer" in problem["detail"]


@pytest.mark.parametrize("content_type", ["application/json", "application/octet-stream"])
def test_a_chunked_body_is_refused_413_as_soon_as_it_passes_the_limit(
        api: Any, content_type: str) -> None:
    app, _, _ = api
    answer = call(app, "POST", "/v1/jobs", endless(), keyed(**{"content-type": content_type}))
    problem = assert_problem(answer, 413, "body_too_large")
    assert problem["detail"] == f"at most {LIMIT} bytes"
    assert answer.chunks_read == LIMIT // CHUNK + 1  # the chunk that passed it, no more


def test_a_content_length_over_the_limit_is_refused_before_anything_else(api: Any) -> None:
    app, tenants, _ = api
    for length in (str(LIMIT + 1), "12abc"):
        answer = call(app, "POST", "/v1/jobs", endless(), {"content-length": length})
        assert_problem(answer, 413, "body_too_large")
        assert answer.chunks_read == 0
    assert tenants.lookups == []


def test_a_body_at_the_limit_is_read_and_parsed(api: Any) -> None:
    app, _, ledger = api
    body = json.dumps(JOB).encode()
    body += b" " * (LIMIT - len(body))
    answer = call(app, "POST", "/v1/jobs", [body[:CHUNK], body[CHUNK:]], keyed())
    assert answer.status == 202, answer.body
    assert [j.key for j in ledger.list_jobs()] == ["a.png"]


def test_json_nested_too_deep_is_422_naming_the_body_and_records_nothing(api: Any) -> None:
    app, _, ledger = api
    deep = b'{"source": ' + b"[" * 40_000 + b"]" * 40_000 + b"}"
    problem = assert_problem(call(app, "POST", "/v1/jobs", [deep], keyed()), 422,
                             "invalid_request")
    assert problem["errors"] == [{"loc": ["body"],
                                  "msg": "the JSON is nested too deep (over 64 levels)"}]
    assert ledger.list_jobs() == []


@pytest.mark.parametrize("body", [b"\x00\x00\x00[\xff\xff\xff\xff", b"\xff\xfe[", b"{", b""],
                         ids=["bad-utf-32", "bad-utf-16", "truncated", "empty"])
def test_a_body_that_is_not_json_is_the_parsers_to_refuse_never_a_5xx(
        api: Any, body: bytes) -> None:
    app, _, ledger = api
    answer = call(app, "POST", "/v1/jobs", [body], keyed())
    assert 400 <= answer.status < 500 and answer.status != 413, answer.body
    assert answer.headers["content-type"] == "application/problem+json"
    assert ledger.list_jobs() == []


def test_json_at_a_plausible_depth_passes_the_scan(api: Any) -> None:
    app, _, _ = api
    body = json.dumps({**JOB, "options": {"format": "webp"}}).encode()
    assert call(app, "POST", "/v1/jobs", [body], keyed()).status == 202


WEBHOOK = "/v1/events/webhook"
EVENT = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {
    "bucket": {"name": "photos"}, "object": {"key": "new.png", "sequencer": "01"}}}]}


def test_the_webhook_checks_its_secret_before_reading_the_body(api: Any) -> None:
    app, tenants, _ = api
    answer = call(app, "POST", WEBHOOK, endless(), {"authorization": "Bearer nope"})
    assert_problem(answer, 401, "unauthorized")
    assert answer.chunks_read == 0
    assert tenants.lookups == []  # not an API key: the door leaves it to the webhook


def test_the_webhook_body_is_counted_as_it_streams(api: Any) -> None:
    app, _, _ = api
    answer = call(app, "POST", WEBHOOK, endless(), {"authorization": f"Bearer {SECRET}"})
    assert_problem(answer, 413, "body_too_large")
    assert answer.chunks_read == LIMIT // CHUNK + 1


@pytest.mark.parametrize(("body", "message"), [
    (b"[" * 40_000 + b"]" * 40_000, "nested too deep"),
    (b'{"pad": "' + b"x" * 99_000 + b'"}', None),  # under the API's limit: only the event's
], ids=["deep", "not-an-event"])
def test_the_webhook_refuses_what_is_not_an_event_with_422(
        api: Any, body: bytes, message: str | None) -> None:
    app, _, ledger = api
    answer = call(app, "POST", WEBHOOK, [body], {"authorization": f"Bearer {SECRET}"})
    problem = assert_problem(answer, 422, "invalid_event")
    assert message is None or message in problem["detail"]
    assert ledger.list_jobs() == []


def test_the_webhook_records_an_event(api: Any) -> None:
    app, _, ledger = api
    answer = call(app, "POST", WEBHOOK, [json.dumps(EVENT).encode()],
                  {"authorization": f"Bearer {SECRET}", "content-type": "application/json"})
    assert answer.status == 200, answer.body
    assert answer.json()["created"] == 1
    assert [j.key for j in ledger.list_jobs(tenant="acme")] == ["new.png"]


def test_refusals_at_the_door_are_counted_by_route(api: Any) -> None:
    app, _, _ = api
    call(app, "POST", "/v1/jobs", endless(), {})
    call(app, "GET", "/v1/nowhere", headers={})
    metrics = call(app, "GET", "/metrics").body.decode()
    assert 'clipline_api_requests_total{method="POST",route="/v1/jobs",status="401"} 1.0' \
        in metrics
    assert 'route="unmatched",status="401"' in metrics


# Coroutines run on the event loop: nothing there may block (a database call, S3, a file).
ON_THE_LOOP = {
    "healthz": "returns a constant",
    "_body": "awaits the request body",
    "prometheus": "renders this process's own counters (memory only)",
}


def test_only_non_blocking_routes_and_dependencies_run_on_the_event_loop(api: Any) -> None:
    app, _, _ = api

    def calls(dependant: Any) -> Iterator[Any]:
        if dependant.call is not None:
            yield dependant.call
        for sub in dependant.dependencies:
            yield from calls(sub)

    routes = [r for router in (app.router, jobs.router, batches.router, events.router)
              for r in router.routes if isinstance(r, APIRoute)]
    assert len(routes) > 10
    coroutines = {getattr(c, "__name__", repr(c)) for route in routes
                  for c in calls(route.dependant)
                  if inspect.iscoroutinefunction(c)}
    # FastAPI's security schemes (HTTPBearer, APIKeyHeader) are objects, not functions: their
    # async __call__ reads headers only.
    assert coroutines == set(ON_THE_LOOP)
