"""The HTTP API over real HTTP (uvicorn on loopback), with PostgreSQL, Redis and moto's S3."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from pipeline.errors import NotAnImage
from pipeline.imaging.encode import encode_pixels
from pipeline.jobs import JobStatus
from tests.distkit import Cluster, cluster, serve, wait_for
from tests.pictures import square

pytestmark = [pytest.mark.postgres]
PROBLEM = "application/problem+json"


class Api:
    def __init__(self, c: Cluster, url: str) -> None:
        self.c, self.url = c, url
        self.tenants = TenantStore(c.ledger.engine)
        self.clients: list[httpx.Client] = []

    def client(self, tenant: str = "acme", allow: list[str] | None = None) -> httpx.Client:
        if self.tenants.get(tenant) is None or allow is not None:
            self.tenants.save(tenant, allowed_sources=allow or ["photos/"])
        _, key = self.tenants.create_key(tenant)
        return self.keep(httpx.Client(base_url=self.url,
                                      headers={"Authorization": f"Bearer {key}"}, timeout=30))

    def keep(self, client: httpx.Client) -> httpx.Client:
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture
def api(tmp_path: Path, s3_endpoint: str, request: pytest.FixtureRequest) -> Iterator[Api]:
    overrides = getattr(request, "param", {})
    with cluster(tmp_path, s3_endpoint, redis_db=9, SEGMENTER="fake", **overrides) as c, \
            serve(api_app(c.settings)) as url:
        made = Api(c, url)
        try:
            yield made
        finally:
            made.close()


def job_body(key: str = "shoes/red.png", **options: Any) -> dict[str, Any]:
    return {"source": {"bucket": "photos", "key": key}, "options": options}


def test_submit_poll_and_the_same_request_again(api: Api) -> None:
    client = api.client()
    made = client.post("/v1/jobs", json=job_body(format="webp"))
    assert made.status_code == 202, made.text
    job = made.json()
    assert made.headers["location"] == f"/v1/jobs/{job['id']}"
    assert (job["status"], job["attempts"], job["options"]["format"]) == ("queued", 0, "webp")
    assert api.c.queue.depth() == 1  # published for the workers
    polled = client.get(f"/v1/jobs/{job['id']}")
    assert polled.status_code == 200 and polled.json()["id"] == job["id"]
    again = client.post("/v1/jobs", json=job_body(format="webp"))
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    assert api.c.queue.depth() == 1


def test_an_idempotency_key_reused_for_another_request_is_a_conflict(api: Api) -> None:
    client = api.client()
    key = {"Idempotency-Key": "sku-42"}
    assert client.post("/v1/jobs", json=job_body("a.png"), headers=key).status_code == 202
    clash = client.post("/v1/jobs", json=job_body("b.png"), headers=key)
    assert clash.status_code == 409
    assert clash.headers["content-type"] == PROBLEM
    assert clash.json()["code"] == "idempotency_conflict"


def test_a_hundred_concurrent_posts_with_one_key_make_one_job(api: Api) -> None:
    client = api.client()

    def post(_: int) -> httpx.Response:
        return client.post("/v1/jobs", json=job_body(), headers={"Idempotency-Key": "once"})

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(post, range(100)))
    assert {a.status_code for a in answers} <= {200, 202}
    assert [a.status_code for a in answers].count(202) == 1
    assert len({a.json()["id"] for a in answers}) == 1
    assert len(api.c.ledger.list_jobs(tenant="acme")) == 1


def test_tenants_cannot_see_each_others_jobs(api: Api) -> None:
    a, b = api.client("acme"), api.client("globex")
    job = a.post("/v1/jobs", json=job_body()).json()
    batch = a.post("/v1/batches", json={"items": [{"bucket": "photos", "key": "x.png"}]}).json()
    for answer in (b.get(f"/v1/jobs/{job['id']}"), b.post(f"/v1/jobs/{job['id']}/cancel"),
                   b.get(f"/v1/batches/{batch['id']}")):
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"] == PROBLEM
    unknown = b.get(f"/v1/jobs/{uuid.uuid4()}")
    assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
    assert b.get("/v1/jobs").json()["items"] == []
    assert b.get("/v1/jobs", params={"batch": batch["id"]}).json()["items"] == []
    # a dead job of A's cannot be re-driven by B
    claim = api.c.ledger.claim(uuid.UUID(job["id"]), worker="w")
    api.c.ledger.fail(claim.job.id, claim.token, NotAnImage("text"))
    assert b.post("/v1/dead-letters/redrive", json={"ids": [job["id"]]}).json()["redriven"] == 0
    assert b.get("/v1/dead-letters").json()["items"] == []
    assert a.get(f"/v1/jobs/{job['id']}").json()["status"] == "dead"


def test_keys_are_required_and_checked(api: Api) -> None:
    bare = api.keep(httpx.Client(base_url=api.url))
    missing = bare.get("/v1/jobs")
    assert missing.status_code == 401 and missing.headers["content-type"] == PROBLEM
    wrong = bare.get("/v1/jobs", headers={"X-API-Key": "clp_not-a-key"})
    assert wrong.status_code == 401
    api.tenants.save("acme")
    key_id, key = api.tenants.create_key("acme")
    assert bare.get("/v1/jobs", headers={"X-API-Key": key}).status_code == 200
    api.tenants.revoke_key(key_id)
    assert bare.get("/v1/jobs", headers={"X-API-Key": key}).status_code == 401


def test_sources_outside_the_allowlist_are_refused(api: Api) -> None:
    client = api.client("shoes-only", allow=["photos/shoes/"])
    assert client.post("/v1/jobs", json=job_body("shoes/a.png")).status_code == 202
    refused = client.post("/v1/jobs", json=job_body("bags/a.png"))
    assert refused.status_code == 403 and refused.json()["code"] == "source_not_allowed"
    batch = client.post("/v1/batches", json={"items": [{"bucket": "photos", "key": "x/a.png"}]})
    assert batch.status_code == 403
    assert api.c.ledger.list_jobs(tenant="shoes-only", status=JobStatus.QUEUED)[0].key == \
        "shoes/a.png"


@pytest.mark.parametrize(("body", "code"), [
    (job_body(format="gif"), "invalid_options"),
    ({"source": {"bucket": "photos"}}, "invalid_request"),
    ({"source": {"bucket": "Photos!", "key": "a"}}, "invalid_request"),
    ({"source": {"bucket": "photos", "key": "a"}, "url": "http://x"}, "invalid_request"),
])
def test_bad_requests_get_a_problem_with_a_stable_code(
    api: Api, body: dict[str, Any], code: str
) -> None:
    answer = api.client().post("/v1/jobs", json=body)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["code"] == code
    assert api.c.ledger.list_jobs() == []


@pytest.mark.parametrize("api", [{"API_MAX_BODY_BYTES": "2000"}], indirect=True)
def test_a_body_over_the_limit_is_refused(api: Api) -> None:
    items = [{"bucket": "photos", "key": f"k{i}.png"} for i in range(200)]
    answer = api.client().post("/v1/batches", json={"items": items})
    assert answer.status_code == 413 and answer.json()["code"] == "body_too_large"


@pytest.mark.parametrize("api", [{"API_RATE_PER_SECOND": "1", "API_RATE_BURST": "3"}],
                         indirect=True)
def test_a_key_over_its_rate_gets_429(api: Api) -> None:
    client = api.client()
    codes = [client.get("/v1/jobs").status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and 429 in codes[3:]


def test_batches_inline_by_prefix_and_a_refused_manifest(api: Api) -> None:
    client = api.client()
    inline = client.post("/v1/batches", json={
        "label": "inline", "options": {"format": "webp"},
        "items": [{"bucket": "photos", "key": "a.png"},
                  {"bucket": "photos", "key": "b.png", "options": {"crop": True}}]})
    assert inline.status_code == 202
    assert inline.json()["state"] == "ready" and inline.json()["counts"]["queued"] == 2
    for key in ("cat/a.jpg", "cat/b.jpg", "cat/notes.txt"):
        api.c.s3.put("photos", key, b"x", content_type="image/jpeg")
    listed = client.post("/v1/batches", json={"prefix": "s3://photos/cat/"}).json()
    wait_for(lambda: client.get(f"/v1/batches/{listed['id']}").json()["state"] == "ready", 20,
             "the prefix batch to expand")
    view = client.get(f"/v1/batches/{listed['id']}").json()
    assert view["counts"]["queued"] == 2 and view["expansion"]["received"] == 2
    api.c.s3.put("photos", "m.csv", b"bucket,key,format\nphotos,cat/a.jpg,webp\n"
                 b"photos,cat/c.jpg,\n", content_type="text/csv")
    from_csv = client.post("/v1/batches", json={"manifest": {"bucket": "photos",
                                                             "key": "m.csv"}}).json()
    wait_for(lambda: client.get(f"/v1/batches/{from_csv['id']}").json()["state"] == "ready",
             20, "the CSV manifest to expand")
    assert client.get(f"/v1/batches/{from_csv['id']}").json()["counts"]["queued"] == 2
    api.c.s3.put("photos", "m.txt", b"s3://photos/cat/a.jpg\nnot a line\n",
                 content_type="text/plain")
    bad = client.post("/v1/batches", json={"manifest": {"bucket": "photos", "key": "m.txt"}})
    wait_for(lambda: client.get(f"/v1/batches/{bad.json()['id']}").json()["state"] == "failed",
             20, "the manifest to be refused")
    failed = client.get(f"/v1/batches/{bad.json()['id']}").json()
    assert failed["expansion"]["reason"] == "invalid_manifest"
    assert "line 2" in failed["expansion"]["message"]
    assert failed["counts"]["queued"] == 0


def test_a_finished_job_has_its_output_and_a_working_presigned_url(api: Api) -> None:
    api.c.s3.put("photos", "red.png", square((96, 80), (30, 20, 70, 60), (200, 30, 30)),
                 content_type="image/png")
    client = api.client()
    job = client.post("/v1/jobs", json={"source": {"bucket": "photos", "key": "red.png"}}).json()
    missing = client.post("/v1/jobs", json={"source": {"bucket": "photos", "key": "no.png"}})
    api.c.start_worker(concurrency=1)
    wait_for(lambda: client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded", 60,
             "the job to succeed", api.c.logs)
    done = client.get(f"/v1/jobs/{job['id']}").json()
    assert done["output"]["key"] == f"cutouts/acme/{job['id']}.png"
    assert done["result"]["timings_ms"]["infer"] >= 0
    cut = httpx.get(done["output"]["url"], timeout=10)
    assert cut.status_code == 200
    assert Image.open(io.BytesIO(cut.content)).mode == "RGBA"
    dead_id = missing.json()["id"]
    wait_for(lambda: client.get(f"/v1/jobs/{dead_id}").json()["status"] == "dead", 30,
             "the missing source to be dead-lettered")
    letters = client.get("/v1/dead-letters", params={"reason": "object_missing"}).json()
    assert [j["id"] for j in letters["items"]] == [dead_id]
    assert letters["items"][0]["error"] == "object_missing"
    moved = client.post("/v1/dead-letters/redrive", json={"reason": "object_missing"})
    assert moved.json() == {"redriven": 1}


def test_a_job_with_layers_is_recomposed_from_its_stored_mask(api: Api) -> None:
    # Two squares far apart: two parts. A real worker stores the mask beside the output in
    # moto's S3; the API recomposes from it without the model.
    picture = np.full((120, 200, 3), 255, np.uint8)
    picture[20:100, 10:90] = (200, 30, 30)
    picture[40:80, 140:180] = (30, 30, 200)
    api.c.s3.put("photos", "two.png", encode_pixels(picture, "png"), content_type="image/png")
    client = api.client()
    job = client.post("/v1/jobs", json=job_body("two.png", layers=True)).json()
    api.c.start_worker(concurrency=1)
    wait_for(lambda: client.get(f"/v1/jobs/{job['id']}").json()["status"] == "succeeded", 60,
             "the job to succeed", api.c.logs)
    done = client.get(f"/v1/jobs/{job['id']}").json()
    parts, bucket = done["result"]["layers"], done["output"]["bucket"]
    assert len(parts) == 2
    assert done["result"]["layers_mask"] == {
        "bucket": bucket, "key": f"cutouts/acme/{job['id']}.mask.png"}
    same = client.post(f"/v1/jobs/{job['id']}/recompose", json={"layers": [0, 1]})
    assert same.status_code == 200, same.text
    assert api.c.s3.get(bucket, same.json()["output"]["key"]) == \
        api.c.s3.get(bucket, done["output"]["key"])
    right = next(p["id"] for p in parts if p["bbox"][0] > 100)
    hidden = client.post(f"/v1/jobs/{job['id']}/recompose",
                         json={"layers": [p["id"] for p in parts if p["id"] != right]})
    assert hidden.status_code == 200, hidden.text
    alpha = np.asarray(Image.open(io.BytesIO(httpx.get(hidden.json()["output"]["url"],
                                                       timeout=10).content)))[..., 3]
    assert alpha[60, 160] == 0 and alpha[60, 50] == 255
    bad = client.post(f"/v1/jobs/{job['id']}/recompose", json={"layers": [5]})
    assert (bad.status_code, bad.json()["code"]) == (422, "unknown_layer")


def test_health_readiness_and_metrics(api: Api) -> None:
    bare = api.keep(httpx.Client(base_url=api.url))
    assert bare.get("/healthz").json() == {"status": "ok"}
    ready = bare.get("/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    api.client().get("/v1/jobs")
    metrics = bare.get("/metrics").text
    assert 'clipline_api_requests_total{method="GET",route="/v1/jobs",status="200"}' in metrics


def test_readiness_fails_when_the_broker_is_down(tmp_path: Path, s3_endpoint: str) -> None:
    with cluster(tmp_path, s3_endpoint, redis_db=9, REDIS_URL="redis://127.0.0.1:1/0") as c, \
            serve(api_app(c.settings)) as url:
        ready = httpx.get(f"{url}/readyz", timeout=30)
    assert ready.status_code == 503 and ready.json()["code"] == "not_ready"
    assert ready.json()["database"] == "ok" and ready.json()["broker"] != "ok"


def test_a_deadline_stands_for_a_priority(api: Api) -> None:
    from datetime import UTC, datetime, timedelta

    client = api.client()
    soon = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    urgent = client.post("/v1/jobs", json={**job_body("a.png"), "deadline": soon})
    relaxed = client.post("/v1/jobs", json={**job_body("b.png"), "deadline": later})
    assert (urgent.json()["priority"], relaxed.json()["priority"]) == (10, 0)
    assert api.c.redis.llen("interactive") == 1 and api.c.redis.llen("bulk") == 1
    both = client.post("/v1/jobs", json={**job_body("c.png"), "deadline": soon, "priority": 1})
    assert both.status_code == 422 and both.json()["code"] == "priority_or_deadline"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    gone = client.post("/v1/jobs", json={**job_body("d.png"), "deadline": past})
    assert gone.status_code == 422 and gone.json()["code"] == "deadline_passed"
