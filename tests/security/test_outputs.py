"""Attacker's checklist, outputs: a job cannot choose where its cut-out is written. Today no
request field names an output destination (cut-outs go to ``CLIPLINE_S3_OUTPUT_BUCKET``), so
a tenant cannot make Clipline write into a bucket it was not given.

The day a field is added that can name one (the catalog issue), these tests fail until that
field is held to the same default-deny allowlist as sources and tested here: then update the
pinned field lists below together with that test."""

from __future__ import annotations

import pytest

from pipeline.api.schemas import BatchItem, BatchRequest, JobRequest, Source
from pipeline.intake import JSON_FIELDS, OPTION_NAMES
from tests.security.conftest import World, job

# Every field a request can carry. A new one that names a place to write needs its check.
PINNED = {
    # model: which served model runs the job (a name checked against CLIPLINE_SERVED_MODELS),
    # never where the cut-out goes.
    "JobRequest": {"source", "options", "priority", "deadline", "callback_url", "model"},
    "Source": {"bucket", "key", "version"},
    "BatchItem": {"bucket", "key", "version", "options", "priority", "model"},
    "BatchRequest": {"items", "manifest", "prefix", "options", "priority", "label",
                     "callback_url", "model"},
    "manifest JSON line": {"bucket", "key", "version", "options", "priority",
                           "idempotency_key", "model"},
}
OUTPUTS = ("output", "destination", "target", "dest", "sink", "write")


def test_no_request_field_can_name_an_output_destination() -> None:
    found = {"JobRequest": set(JobRequest.model_fields), "Source": set(Source.model_fields),
             "BatchItem": set(BatchItem.model_fields),
             "BatchRequest": set(BatchRequest.model_fields),
             "manifest JSON line": set(JSON_FIELDS)}
    assert found == PINNED, "a request field was added or removed: if it can name where a " \
        "cut-out is written, check it against the tenant's allowlist (default deny) and test " \
        "that in tests/security/test_outputs.py, then update PINNED"
    for names in (*found.values(), set(OPTION_NAMES)):
        assert not [n for n in names if any(word in n for word in OUTPUTS)]


@pytest.mark.parametrize("extra", [
    {"output_bucket": "payroll"}, {"output": {"bucket": "payroll", "key": "x.png"}},
    {"destination": "s3://payroll/x.png"},
])
def test_a_job_naming_an_output_bucket_is_refused(world: World, extra: dict[str, object]) -> None:
    client = world.client(world.key("acme", ["photos/"]))
    assert client.post("/v1/jobs", json=job(**extra)).status_code == 422
    assert client.post("/v1/jobs", json=job(options=extra)).status_code == 422
    assert client.post("/v1/batches", json={"items": [{"bucket": "photos", "key": "a.jpg",
                                                       **extra}]}).status_code == 422


def test_a_manifest_line_naming_an_output_bucket_refuses_the_batch(world: World) -> None:
    client = world.client(world.key("acme", ["photos/"]))
    world.store.objects[("photos", "m.jsonl")] = (
        b'{"bucket": "photos", "key": "a.jpg", "output_bucket": "payroll"}\n')
    made = client.post("/v1/batches", json={"manifest": {"bucket": "photos", "key": "m.jsonl"}})
    view = client.get(f"/v1/batches/{made.json()['id']}").json()
    assert view["state"] == "failed" and view["expansion"]["reason"] == "invalid_manifest"
