"""``POST /v1/events/webhook``: pushed S3 notifications through the same rules as the SQS path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from tests.distkit import Cluster, cluster, serve

pytestmark = [pytest.mark.postgres]
SECRET = "webhook-secret-for-tests"
RULES = """
[[rule]]
bucket = "photos"
prefix = "incoming/"
tenant = "acme"
[rule.options]
format = "webp"
"""


def minio(key: str, sequencer: str = "17A0") -> dict[str, Any]:
    """MinIO's webhook body: S3 records (keys URL-encoded) plus top-level EventName and Key."""
    return {"EventName": "s3:ObjectCreated:Put", "Key": f"photos/{key}", "Records": [{
        "eventName": "s3:ObjectCreated:Put",
        "s3": {"bucket": {"name": "photos"},
               "object": {"key": key.replace(" ", "+"), "size": 10, "eTag": "abc",
                          "sequencer": sequencer}}}]}


def eventbridge(key: str) -> dict[str, Any]:
    return {"detail-type": "Object Created", "source": "aws.s3", "detail": {
        "bucket": {"name": "photos"},
        "object": {"key": key, "size": 10, "etag": "def", "sequencer": "18B0"}}}


@pytest.fixture
def hooked(tmp_path: Path, s3_endpoint: str) -> Iterator[tuple[Cluster, str]]:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    with cluster(tmp_path, s3_endpoint, redis_db=4, EVENTS_RULES_FILE=str(rules),
                 EVENTS_WEBHOOK_SECRET=SECRET) as c, serve(api_app(c.settings)) as url:
        TenantStore(c.ledger.engine).save("acme", allowed_sources=["photos/"])
        yield c, url


def post(url: str, body: Any, secret: str = SECRET) -> httpx.Response:
    return httpx.post(f"{url}/v1/events/webhook", content=json.dumps(body),
                      headers={"Authorization": f"Bearer {secret}"}, timeout=30)


def test_pushed_events_become_jobs_once(hooked: tuple[Cluster, str]) -> None:
    c, url = hooked
    first = post(url, minio("incoming/red shoe.jpg"))
    assert first.status_code == 200, first.text
    assert first.json() == {"created": 1, "existing": 0, "skipped": 0, "published": True}
    again = post(url, minio("incoming/red shoe.jpg"))
    assert again.json()["created"] == 0 and again.json()["existing"] == 1
    assert post(url, eventbridge("incoming/tote.png")).json()["created"] == 1
    assert post(url, minio("elsewhere/x.jpg")).json()["skipped"] == 1  # no rule matches
    jobs = c.ledger.list_jobs(tenant="acme")
    assert sorted(j.key for j in jobs) == ["incoming/red shoe.jpg", "incoming/tote.png"]
    assert {j.options["format"] for j in jobs} == {"webp"}
    assert c.queue.depth() == 2


def test_the_webhook_refuses_wrong_secrets_and_garbage(hooked: tuple[Cluster, str]) -> None:
    c, url = hooked
    assert post(url, minio("incoming/a.jpg"), secret="nope").status_code == 401
    bad = post(url, {"hello": "world"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_event"
    assert c.ledger.list_jobs() == []


def test_the_webhook_is_off_without_a_secret(tmp_path: Path, s3_endpoint: str) -> None:
    with cluster(tmp_path, s3_endpoint, redis_db=4) as c, serve(api_app(c.settings)) as url:
        answer = post(url, minio("incoming/a.jpg"))
    assert answer.status_code == 404
