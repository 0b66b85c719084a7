"""Attacker's checklist, sources: a tenant's key must never make Clipline read what the
tenant was not given, through any door (one job, batch items, a manifest object, its lines,
CSV lines, a prefix, S3 events, the webhook), and a tenant nobody gave sources reads nothing.

Hole 1 of issue 18: a tenant created without ``--allow`` could read every bucket Clipline's
own credentials reach (``test_hole_1_*``)."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from pipeline.event_rules import EventRules
from pipeline.events import ObjectCreated, record_events
from tests.distkit import wait_for
from tests.security.conftest import RULES, World, job


def new_key(world: World, *args: str) -> str:
    made = world.cli("tenants", "create", "acme", *args)
    assert made.exit_code == 0, made.output
    issued = world.cli("tenants", "key", "acme")
    assert issued.exit_code == 0, issued.output
    return issued.output.strip().splitlines()[-1]


def test_hole_1_a_tenant_created_without_allow_can_submit_no_source(world: World) -> None:
    client = world.client(new_key(world))
    for bucket, key in (("photos", "a.jpg"), ("payroll", "2026/salaries.csv")):
        answer = client.post("/v1/jobs", json=job(key, bucket))
        assert answer.status_code == 403, answer.text
        assert answer.json()["code"] == "source_not_allowed"
    listed = client.post("/v1/batches", json={"prefix": "s3://payroll/"})
    assert listed.status_code == 403
    assert world.store.touched == []  # not even listed
    assert world.ledger.list_jobs(tenant="acme") == []


def test_hole_1_a_tenant_without_allow_gets_no_jobs_from_the_webhook(world: World) -> None:
    new_key(world)
    answer = world.webhook("payroll", "2026/salaries.jpg")
    assert answer.status_code == 200, answer.text
    assert world.ledger.list_jobs(tenant="acme") == []


def test_every_source_is_a_stored_visible_logged_choice(world: World) -> None:
    client = world.client(new_key(world, "--allow-any"))
    shown = world.cli("tenants", "show", "acme")
    assert '"allow_any": true' in shown.output
    with capture_logs() as logs:
        assert client.post("/v1/jobs", json=job("x.jpg", "anything")).status_code == 202
    used = [e for e in logs if e["event"] == "allow_any_used"]
    assert used and used[0]["tenant"] == "acme" and used[0]["door"] == "api_job"


def put(world: World, bucket: str, key: str, data: bytes = b"x") -> None:
    world.store.objects[(bucket, key)] = data


def batch_failed(world: World, client: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Submit a batch and wait for its expansion to settle: it runs after the 202 is sent, so
    a GET at once may still find the batch ``expanding`` (CI found that race)."""
    made = client.post("/v1/batches", json=body)
    assert made.status_code == 202, made.text
    where = f"/v1/batches/{made.json()['id']}"
    wait_for(lambda: client.get(where).json()["state"] != "expanding", 20, "the expansion")
    view = client.get(where).json()
    assert view["state"] == "failed", view
    return dict(view["expansion"])


@pytest.fixture
def shoes(world: World) -> Any:
    """A tenant that may read photos/shoes/ only."""
    return world.client(world.key("acme", ["photos/shoes/"]))


def test_a_job_outside_the_allowlist_is_refused(world: World, shoes: Any) -> None:
    assert shoes.post("/v1/jobs", json=job("shoes/a.jpg")).status_code == 202
    for bucket, key in (("photos", "bags/a.jpg"), ("photos-private", "shoes/a.jpg"),
                        ("photos", "shoes"), ("payroll", "shoes/a.jpg")):
        answer = shoes.post("/v1/jobs", json=job(key, bucket))
        assert answer.json()["code"] == "source_not_allowed", (bucket, key)


def test_batch_items_outside_the_allowlist_refuse_the_batch(world: World, shoes: Any) -> None:
    answer = shoes.post("/v1/batches", json={"items": [
        {"bucket": "photos", "key": "shoes/a.jpg"}, {"bucket": "payroll", "key": "x.jpg"}]})
    assert answer.status_code == 403
    assert world.ledger.list_jobs(tenant="acme") == []


def test_a_manifest_object_outside_the_allowlist_is_never_read(world: World,
                                                               shoes: Any) -> None:
    put(world, "payroll", "m.txt", b"s3://photos/shoes/a.jpg\n")
    answer = shoes.post("/v1/batches", json={"manifest": {"bucket": "payroll", "key": "m.txt"}})
    assert answer.status_code == 403
    assert world.store.touched == []


@pytest.mark.parametrize(("name", "text"), [
    ("m.txt", "s3://photos/shoes/a.jpg\ns3://payroll/x.jpg\n"),
    ("m.jsonl", '{"bucket": "photos", "key": "shoes/a.jpg"}\n{"bucket": "payroll", "key": "x"}\n'),
    ("m.csv", "bucket,key\nphotos,shoes/a.jpg\npayroll,x.jpg\n"),
])
def test_a_manifest_line_outside_the_allowlist_refuses_the_batch(
        world: World, shoes: Any, name: str, text: str) -> None:
    put(world, "photos", f"shoes/{name}", text.encode())
    expansion = batch_failed(world, shoes, {"manifest": {"bucket": "photos",
                                                        "key": f"shoes/{name}"}})
    assert expansion["reason"] == "source_not_allowed"
    assert world.ledger.list_jobs(tenant="acme") == []


def test_a_prefix_outside_the_allowlist_is_never_listed(world: World, shoes: Any) -> None:
    put(world, "photos", "bags/a.jpg")
    for prefix in ("s3://photos/bags/", "s3://photos/", "s3://photos/shoe"):
        assert shoes.post("/v1/batches", json={"prefix": prefix}).status_code == 403, prefix
    assert world.store.touched == []


def test_s3_events_outside_the_allowlist_make_no_job(world: World) -> None:
    world.key("acme", ["photos/shoes/"])
    rules = EventRules.parse(RULES, model="u2netp")
    records = [ObjectCreated("photos", "shoes/a.jpg", sequencer="1"),
               ObjectCreated("payroll", "x.jpg", sequencer="2"),
               ObjectCreated("photos", "bags/a.jpg", sequencer="3")]
    outcome = record_events(records, rules, world.ledger, tenants=world.tenants.get)
    assert [j.key for j in outcome.created] == ["shoes/a.jpg"]
    assert sorted(s.reason for s in outcome.skipped) == ["source_not_allowed"] * 2


def test_the_webhook_outside_the_allowlist_makes_no_job(world: World) -> None:
    world.key("acme", ["photos/shoes/"])
    assert world.webhook("payroll", "x.jpg").status_code == 200
    assert world.webhook("photos", "bags/a.jpg").status_code == 200
    assert world.webhook("photos", "shoes/a.jpg").status_code == 200
    assert [j.key for j in world.ledger.list_jobs(tenant="acme")] == ["shoes/a.jpg"]
