"""Attacker's checklist, outputs: a job chooses where its cut-out is written only within what
the operator gave its tenant. The one request field that names a destination is ``output``
(``JobRequest`` and ``BatchRequest``; ``pipeline.output_keys``): its bucket and resolved key
are held to the tenant's own area of the service's bucket plus its ``allowed_outputs``
(default deny, like sources), at every door that can carry it.

A new field that could name a place to write fails ``test_request_fields_are_pinned`` until
it is held to the same check and tested here: then update the pinned field lists below."""

from __future__ import annotations

import pytest

from pipeline.api.schemas import BatchItem, BatchRequest, JobRequest, OutputRequest, Source
from pipeline.intake import JSON_FIELDS, OPTION_NAMES
from tests.distkit import wait_for
from tests.security.conftest import World, job

# Every field a request can carry. A new one that names a place to write needs its check.
PINNED = {
    # model: which served model runs the job (a name checked against CLIPLINE_SERVED_MODELS),
    # never where the cut-out goes. output: checked (below).
    "JobRequest": {"source", "options", "priority", "deadline", "callback_url", "model",
                   "output"},
    "Source": {"bucket", "key", "version"},
    "OutputRequest": {"bucket", "key_template"},
    "BatchItem": {"bucket", "key", "version", "options", "priority", "model"},
    "BatchRequest": {"items", "manifest", "prefix", "options", "priority", "label",
                     "callback_url", "model", "output", "report_callback_url"},
    "manifest JSON line": {"bucket", "key", "version", "options", "priority",
                           "idempotency_key", "model"},
}
CHECKED = {"output"}  # the fields that name a destination, each held to the output allowlist
OUTPUTS = ("output", "destination", "target", "dest", "sink", "write")


def test_request_fields_are_pinned() -> None:
    found = {"JobRequest": set(JobRequest.model_fields), "Source": set(Source.model_fields),
             "OutputRequest": set(OutputRequest.model_fields),
             "BatchItem": set(BatchItem.model_fields),
             "BatchRequest": set(BatchRequest.model_fields),
             "manifest JSON line": set(JSON_FIELDS)}
    assert found == PINNED, "a request field was added or removed: if it can name where a " \
        "cut-out is written, check it against the tenant's output allowlist (default deny) " \
        "and test that in tests/security/test_outputs.py, then update PINNED"
    for names in (*found.values(), set(OPTION_NAMES)):
        assert not [n for n in names - CHECKED if any(word in n for word in OUTPUTS)]


@pytest.mark.parametrize("extra", [
    {"output_bucket": "payroll"}, {"output": {"bucket": "payroll", "key": "x.png"}},
    {"destination": "s3://payroll/x.png"},
])
def test_unknown_output_fields_are_refused(world: World, extra: dict[str, object]) -> None:
    client = world.client(world.key("acme", ["photos/"]))
    assert client.post("/v1/jobs", json=job(**extra)).status_code == 422
    assert client.post("/v1/jobs", json=job(options=extra)).status_code == 422
    assert client.post("/v1/batches", json={"items": [{"bucket": "photos", "key": "a.jpg",
                                                       **extra}]}).status_code == 422


@pytest.mark.parametrize("output", [
    {"bucket": "payroll"},  # a bucket no rule names
    {"bucket": "payroll", "key_template": "{key}"},
    {"key_template": "cutouts/globex/{key}"},  # another tenant's area of the service's bucket
    {"key_template": "cutouts/acme-evil/{key}"},  # a sibling that shares the prefix's text
    {"key_template": "{key}"},  # outside every tenant's area
])
def test_an_output_outside_the_tenants_is_403_at_every_door(world: World,
                                                            output: dict[str, str]) -> None:
    client = world.client(world.key("acme", ["photos/"]))
    for answer in (client.post("/v1/jobs", json=job(output=output)),
                   client.post("/v1/batches", json={"items": [{"bucket": "photos",
                                                               "key": "a.jpg"}],
                                                    "output": output})):
        assert answer.status_code == 403, answer.text
        assert answer.json()["code"] == "output_not_allowed"
    world.store.objects[("photos", "m.txt")] = b"s3://photos/a.jpg\n"
    made = client.post("/v1/batches", json={"manifest": {"bucket": "photos", "key": "m.txt"},
                                            "output": output})
    where = f"/v1/batches/{made.json()['id']}"
    wait_for(lambda: client.get(where).json()["state"] != "expanding", 20, "the expansion")
    view = client.get(where).json()
    assert view["state"] == "failed" and view["expansion"]["reason"] == "output_not_allowed"
    assert world.ledger.list_jobs(tenant="acme") == []


def test_allow_any_does_not_open_outputs(world: World) -> None:
    world.tenants.save("acme", allow_any=True)
    client = world.client(world.key("acme"))
    answer = client.post("/v1/jobs", json=job(output={"bucket": "payroll"}))
    assert answer.status_code == 403 and answer.json()["code"] == "output_not_allowed"


def test_an_output_rule_opens_exactly_its_prefix(world: World) -> None:
    client = world.client(world.key("acme", ["photos/"]))
    world.tenants.save("acme", allowed_outputs=["catalog/cutouts/"])
    inside = client.post("/v1/jobs", json=job(output={
        "bucket": "catalog", "key_template": "cutouts/{key}"}))
    assert inside.status_code == 202, inside.text
    assert inside.json()["destination"] == {"bucket": "catalog", "key": "cutouts/a.jpg"}
    for template in ("cutouts-x/{key}", "other/{key}", "{key}"):
        answer = client.post("/v1/jobs", json=job(output={"bucket": "catalog",
                                                          "key_template": template}))
        assert answer.status_code == 403, template


def test_a_manifest_line_naming_an_output_bucket_refuses_the_batch(world: World) -> None:
    client = world.client(world.key("acme", ["photos/"]))
    world.store.objects[("photos", "m.jsonl")] = (
        b'{"bucket": "photos", "key": "a.jpg", "output_bucket": "payroll"}\n')
    made = client.post("/v1/batches", json={"manifest": {"bucket": "photos", "key": "m.jsonl"}})
    where = f"/v1/batches/{made.json()['id']}"
    wait_for(lambda: client.get(where).json()["state"] != "expanding", 20, "the expansion")
    view = client.get(where).json()
    assert view["state"] == "failed" and view["expansion"]["reason"] == "invalid_manifest"
