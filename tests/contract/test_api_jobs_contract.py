"""``/v1/jobs`` over every ledger (in-memory, SQLite, PostgreSQL): an ``Idempotency-Key``
stands for the whole request, and listings page by an opaque cursor.

The app is served by uvicorn on loopback; the broker (a ``MemoryQueue``) and the tenant store
(one fixed tenant) are fakes, being what these tests do not test. With Redis and S3 as well:
tests/integration/test_api.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from pipeline.adapters.queue.memory import MemoryQueue
from pipeline.api.app import create_app
from pipeline.api.deps import ApiDeps
from pipeline.clock import ManualClock
from pipeline.settings import Settings
from pipeline.tenants import Tenant
from tests.distkit import serve

Ledger = Any  # SqlLedger | MemoryLedger
HOOK = "https://example.com/hooks/clipline"


class OneTenant:
    def tenant_for_key(self, key: str) -> Tenant | None:
        return Tenant("default", "default", allow_any=True) if key == "k" else None


@pytest.fixture
def client(ledger: Ledger) -> Iterator[httpx.Client]:
    deps = ApiDeps(settings=Settings(), ledger=ledger, tenants=OneTenant(), queue=MemoryQueue())
    with serve(create_app(deps)) as url, \
            httpx.Client(base_url=url, headers={"X-API-Key": "k"}, timeout=30) as made:
        yield made


def body(key: str = "shoes/red.png", **extra: Any) -> dict[str, Any]:
    return {"source": {"bucket": "photos", "key": key}, "options": {"format": "png"}, **extra}


def post(client: httpx.Client, payload: dict[str, Any], key: str = "sku-42") -> Any:
    return client.post("/v1/jobs", json=payload, headers={"Idempotency-Key": key})


def test_the_same_key_and_body_answers_200_with_the_same_job(client: httpx.Client) -> None:
    made = post(client, body(priority=3, callback_url=HOOK))
    again = post(client, body(priority=3, callback_url=HOOK))
    assert (made.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == made.json()["id"]
    # No priority is priority 5 (the default): the same request.
    assert post(client, body(), "sku-43").status_code == 202
    assert post(client, body(priority=5), "sku-43").status_code == 200


@pytest.mark.parametrize(("change", "fields"), [
    ({"priority": 9}, ["priority"]),
    ({"priority": None, "deadline": "2026-01-01T05:00:00Z"}, ["deadline", "priority"]),
    ({"callback_url": HOOK}, ["callback_url"]),
    ({"options": {"format": "webp"}}, ["options.format"]),
    ({"source": {"bucket": "photos", "key": "shoes/blue.png"}}, ["source.key"]),
    ({"priority": 9, "callback_url": HOOK}, ["callback_url", "priority"]),
])
def test_the_same_key_with_another_body_is_409_naming_the_fields(
    client: httpx.Client, change: dict[str, Any], fields: list[str]
) -> None:
    first = post(client, body(priority=3))
    clash = post(client, {**body(priority=3), **change})
    assert clash.status_code == 409, clash.text
    assert clash.headers["content-type"] == "application/problem+json"
    problem = clash.json()
    assert (problem["code"], problem["fields"]) == ("idempotency_conflict", fields)
    assert all(f in problem["detail"] for f in fields)
    assert client.get(f"/v1/jobs/{first.json()['id']}").json()["priority"] == 3


def test_a_deadline_resent_a_minute_later_is_the_same_request(
    client: httpx.Client, clock: ManualClock
) -> None:
    deadline = (clock.now() + timedelta(minutes=15, seconds=30)).isoformat()
    made = post(client, body(deadline=deadline))
    assert made.json()["priority"] == 7  # within the hour
    clock.advance(60)  # now within 15 minutes: the deadline would stand for priority 10
    again = post(client, body(deadline=deadline))
    assert again.status_code == 200 and again.json()["id"] == made.json()["id"]
    assert post(client, body(deadline=deadline, callback_url=HOOK)).json()["fields"] == [
        "callback_url"]


def test_without_a_key_another_priority_or_callback_folds_into_the_job(
    client: httpx.Client,
) -> None:
    made = client.post("/v1/jobs", json=body(priority=1))
    again = client.post("/v1/jobs", json=body(priority=9, callback_url=HOOK))
    assert (made.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == made.json()["id"] and again.json()["priority"] == 1


def test_jobs_page_by_an_opaque_cursor_to_a_null_one(client: httpx.Client) -> None:
    made = [client.post("/v1/jobs", json=body(f"k{i}.png")).json()["id"] for i in range(5)]
    seen: list[str] = []
    after: str | None = None
    while True:
        page = client.get("/v1/jobs", params={"limit": 2, **({"after": after} if after else {})})
        assert page.status_code == 200, page.text
        seen += [j["id"] for j in page.json()["items"]]
        after = page.json()["next_cursor"]
        if after is None:
            break
        assert isinstance(after, str)
    assert seen == made


@pytest.mark.parametrize("cursor", ["nope", "3f1c2a9e-0000-7000-8000-000000000000"])
def test_a_cursor_the_api_did_not_give_is_422(client: httpx.Client, cursor: str) -> None:
    answer = client.get("/v1/jobs", params={"after": cursor})
    assert answer.status_code == 422
    assert answer.json()["code"] in {"invalid_cursor", "invalid_request"}
    dead = client.get("/v1/dead-letters", params={"after": cursor})
    assert dead.status_code == 422


def test_the_openapi_contract_describes_the_cursor(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    after = next(p for p in spec["paths"]["/v1/jobs"]["get"]["parameters"]
                 if p["name"] == "after")
    assert "opaque" in str(after).lower() and "exactly once" in str(after)
    page = spec["components"]["schemas"]["JobPage"]["properties"]["next_cursor"]
    assert "opaque" in str(page)
