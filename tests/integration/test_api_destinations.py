"""Output destinations through the HTTP API (uvicorn on loopback), with PostgreSQL, Redis, moto's
S3 and a real worker process: key templates mirror the source tree, other buckets need an
output rule, and bad templates, disallowed outputs and collisions are refused as problems."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from tests.distkit import Cluster, cluster, serve, wait_for
from tests.pictures import square

pytestmark = [pytest.mark.postgres]
PROBLEM = "application/problem+json"
MIRROR = "{prefix}/{key_dir}/{key_stem}.{ext}"


class Api:
    def __init__(self, c: Cluster, url: str) -> None:
        self.c, self.url = c, url
        self.tenants = TenantStore(c.ledger.engine)
        self.clients: list[httpx.Client] = []

    def client(self, outputs: list[str] | None = None) -> httpx.Client:
        self.tenants.save("acme", allowed_sources=["photos/"], allowed_outputs=outputs or [])
        _, key = self.tenants.create_key("acme")
        client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"},
                              timeout=30)
        self.clients.append(client)
        return client


@pytest.fixture
def api(tmp_path: Path, s3_endpoint: str) -> Iterator[Api]:
    with cluster(tmp_path, s3_endpoint, redis_db=9, SEGMENTER="fake") as c, \
            serve(api_app(c.settings)) as url:
        made = Api(c, url)
        try:
            yield made
        finally:
            for client in made.clients:
                client.close()


def job(key: str, output: dict[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"source": {"bucket": "photos", "key": key}, "options": options}
    if output is not None:
        body["output"] = output
    return body


def problem(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    found: dict[str, Any] = answer.json()
    assert found["code"] == code, found
    return found


def test_cut_outs_land_where_the_template_says_and_a_retry_would_write_the_same_key(
        api: Api) -> None:
    api.c.s3.client.create_bucket(Bucket="catalog")
    picture = square((64, 48), (20, 10, 40, 30), (200, 30, 30))
    sources = ["2026-11-30/shoes/SKU 1 100%.jpg", "2026-11-30/été/靴.png", "root.png"]
    for key in sources:
        api.c.s3.put("photos", key, picture, content_type="image/png")
    client = api.client(outputs=["catalog/cutouts/"])
    made = [client.post("/v1/jobs", json=job(k, {"key_template": MIRROR}, format="webp"))
            for k in sources]
    other = client.post("/v1/jobs", json=job(sources[0], {
        "bucket": "catalog", "key_template": "cutouts/{key_dir}/{key_name}.{ext}"}))
    assert [m.status_code for m in made] == [202, 202, 202] and other.status_code == 202
    expected = ["cutouts/acme/2026-11-30/shoes/SKU 1 100%.webp",
                "cutouts/acme/2026-11-30/été/靴.webp", "cutouts/acme/root.webp"]
    assert [m.json()["destination"] for m in made] == [
        {"bucket": None, "key": k} for k in expected]
    # The same request again is the same job; without the destination it is another one.
    again = client.post("/v1/jobs", json=job(sources[0], {"key_template": MIRROR},
                                             format="webp"))
    assert again.status_code == 200 and again.json()["id"] == made[0].json()["id"]
    plain = client.post("/v1/jobs", json=job(sources[0], format="webp"))
    assert plain.status_code == 202 and plain.json()["destination"] is None
    ids = [m.json()["id"] for m in [*made, other, plain]]
    api.c.start_worker(concurrency=1)
    for job_id in ids:
        wait_for(lambda j=job_id: client.get(f"/v1/jobs/{j}").json()["status"] == "succeeded",
                 60, "the jobs to succeed", api.c.logs)
    done = [client.get(f"/v1/jobs/{j}").json() for j in ids]
    bucket = api.c.output_bucket
    assert [d["output"] for d in done[:3]] == [
        {"bucket": bucket, "key": k, "url": d["output"]["url"]} for k, d in zip(
            expected, done[:3], strict=True)]
    for key in expected:
        assert api.c.s3.get(bucket, key)[:4] == b"RIFF"  # webp, where the template said
    assert done[3]["output"]["bucket"] == "catalog"
    assert done[3]["output"]["key"] == "cutouts/2026-11-30/shoes/SKU 1 100%.jpg.png"
    assert api.c.s3.get("catalog", done[3]["output"]["key"])[:4] == b"\x89PNG"
    assert done[4]["output"]["key"] == f"cutouts/acme/{ids[4]}.webp"  # the default, as before
    assert httpx.get(done[0]["output"]["url"], timeout=10).status_code == 200
    # A redriven or retried job is the same row: it holds its resolved key, not the template.
    row = api.c.ledger.get(uuid.UUID(ids[0]))
    assert row.output_key == expected[0]


def test_outputs_outside_the_allowlist_are_403(api: Api) -> None:
    client = api.client(outputs=["catalog/cutouts/"])
    for output in ({"bucket": "elsewhere", "key_template": "{key}"},
                   {"bucket": "catalog", "key_template": "{key}"},  # not under cutouts/
                   {"key_template": "cutouts/globex/{key}"},  # another tenant's area
                   {"bucket": "elsewhere"}):
        found = problem(client.post("/v1/jobs", json=job("a.png", output)), 403,
                        "output_not_allowed")
        assert "allowed outputs" in found["detail"]
    assert api.c.ledger.list_jobs(tenant="acme") == []


@pytest.mark.parametrize("template, words", [
    ("{prefix}/{sku}.{ext}", "unknown placeholder"),
    ("{prefix}/../{key}", "'..'"),
    ("{prefix}//{key}", "empty segment"),
    ("{prefix}/{key", "unbalanced"),
    ("{key}", "overwrite the source"),
])
def test_bad_templates_are_422_invalid_output(api: Api, template: str, words: str) -> None:
    client = api.client()
    body = job("a.png", {"bucket": "photos", "key_template": template})
    api.tenants.save("acme", allowed_outputs=["photos/"])
    found = problem(client.post("/v1/jobs", json=body), 422, "invalid_output")
    assert words in found["detail"]


def test_a_bad_bucket_name_is_422(api: Api) -> None:
    client = api.client()
    problem(client.post("/v1/jobs", json=job("a.png", {"bucket": "Bad_Bucket"})), 422,
            "invalid_request")


def test_a_batch_whose_items_collide_is_refused_before_it_exists(api: Api) -> None:
    client = api.client()
    body = {"items": [{"bucket": "photos", "key": "x/SKU1.jpg"},
                      {"bucket": "photos", "key": "x/SKU1.png"}],
            "output": {"key_template": MIRROR}}
    found = problem(client.post("/v1/batches", json=body), 422, "output_key_collision")
    assert "items 1 and 2" in found["detail"]
    assert api.c.ledger.list_jobs(tenant="acme") == []
    body["output"] = {"key_template": "{prefix}/{key_dir}/{key_name}.{ext}"}
    made = client.post("/v1/batches", json=body)
    assert made.status_code == 202, made.text
    listed = client.get("/v1/jobs", params={"batch": made.json()["id"]}).json()["items"]
    assert sorted(j["destination"]["key"] for j in listed) == [
        "cutouts/acme/x/SKU1.jpg.png", "cutouts/acme/x/SKU1.png.png"]


def test_a_manifest_that_collides_fails_its_batch_with_the_reason(api: Api) -> None:
    manifest = b"s3://photos/a/one.jpg\ns3://photos/b/one.jpg\n"
    api.c.s3.put("photos", "m.txt", manifest, content_type="text/plain")
    client = api.client()
    made = client.post("/v1/batches", json={"manifest": {"bucket": "photos", "key": "m.txt"},
                                            "output": {"key_template": "{prefix}/{key_name}"}})
    assert made.status_code == 202, made.text
    batch_id = made.json()["id"]
    wait_for(lambda: client.get(f"/v1/batches/{batch_id}").json()["state"] == "failed", 20,
             "the manifest to be refused")
    failed = client.get(f"/v1/batches/{batch_id}").json()
    assert failed["expansion"]["reason"] == "output_key_collision"
    assert failed["counts"]["queued"] == 0


def test_a_prefix_batch_mirrors_every_key(api: Api) -> None:
    for key in ("in/a/1.png", "in/b/1.png", "in/b/c d.png"):
        api.c.s3.put("photos", key, b"x", content_type="image/png")
    client = api.client()
    made = client.post("/v1/batches", json={"prefix": "s3://photos/in/",
                                            "output": {"key_template": MIRROR}})
    batch_id = made.json()["id"]
    wait_for(lambda: client.get(f"/v1/batches/{batch_id}").json()["state"] == "ready", 20,
             "the prefix to be expanded")
    listed = client.get("/v1/jobs", params={"batch": batch_id}).json()["items"]
    assert sorted(j["destination"]["key"] for j in listed) == [
        "cutouts/acme/in/a/1.png", "cutouts/acme/in/b/1.png", "cutouts/acme/in/b/c d.png"]


def test_a_batch_report_callback_is_recorded_and_checked_like_a_jobs(api: Api) -> None:
    client = api.client()
    items = [{"bucket": "photos", "key": "a.png"}]
    made = client.post("/v1/batches", json={"items": items,
                                            "report_callback_url": "https://example.com/b"})
    assert made.status_code == 202, made.text
    row = api.c.ledger.get_batch(uuid.UUID(made.json()["id"]))
    assert (row["callback_url"], row["callback_state"]) == ("https://example.com/b", None)
    inside = client.post("/v1/batches", json={"items": items,
                                              "report_callback_url": "https://10.0.0.7/b"})
    problem(inside, 422, "callback_url_not_allowed")
