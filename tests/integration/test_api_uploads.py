"""Direct upload over real HTTP (uvicorn on loopback), with PostgreSQL, Redis, moto's S3 and a
real worker: the image in ``POST /v1/jobs`` itself (multipart) and the presigned PUT of
``POST /v1/uploads``, each to a cut-out the worker made; the refusals of both; the door (key,
rate, body size) in front of both."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from pipeline.jobs import JobStatus
from tests.distkit import Cluster, cluster, serve, wait_for
from tests.pictures import square

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]
REDIS_DB = 10
UPLOAD_MAX = 20_000
BODY_MAX = 60_000
PROBLEM = "application/problem+json"
PICTURE = square((120, 80), (30, 20, 90, 60))


@dataclass
class Deployment:
    c: Cluster
    url: str
    tenants: TenantStore
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, tenant: str = "acme", allow: list[str] | None = None) -> httpx.Client:
        self.tenants.save(tenant, allowed_sources=allow if allow is not None else [])
        _, key = self.tenants.create_key(tenant)
        return self.keep(httpx.Client(base_url=self.url, timeout=60,
                                      headers={"Authorization": f"Bearer {key}"}))

    def keep(self, client: httpx.Client) -> httpx.Client:
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[Deployment]:
    with cluster(tmp_path_factory.mktemp("uploads"), s3_endpoint, redis_db=REDIS_DB,
                 SEGMENTER="fake", UPLOAD_MAX_BYTES=str(UPLOAD_MAX),
                 API_MAX_BODY_BYTES=str(BODY_MAX)) as c, serve(api_app(c.settings)) as url:
        c.start_worker(concurrency=1)
        made = Deployment(c, url, TenantStore(c.ledger.engine))
        yield made
        made.close()


def upload(client: httpx.Client, data: bytes = PICTURE, request: dict[str, Any] | None = None,
           **kwargs: Any) -> httpx.Response:
    parts: dict[str, Any] = {} if request is None else {"request": json.dumps(request)}
    return client.post("/v1/jobs", files={"image": ("sku.png", data, "image/png")},
                       data=parts, **kwargs)


def finished(api: Deployment, client: httpx.Client, job_id: str) -> dict[str, Any]:
    def done() -> bool:
        return bool(JobStatus(client.get(f"/v1/jobs/{job_id}").json()["status"]).terminal)

    wait_for(done, 90, f"job {job_id}", api.c.logs)
    view: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
    return view


def problem(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body: dict[str, Any] = answer.json()
    assert body["code"] == code, body
    return body


def test_an_uploaded_image_becomes_a_job_a_worker_cuts_out(api: Deployment) -> None:
    client = api.client()  # no allowlist at all: its own uploads are still its sources
    made = upload(client, request={"options": {"format": "webp"}, "priority": 7})
    assert made.status_code == 202, made.text
    job = made.json()
    digest = hashlib.sha256(PICTURE).hexdigest()
    assert job["source"] == {"bucket": api.c.output_bucket, "key": f"uploads/acme/{digest}",
                             "version": None}
    assert (job["options"]["format"], job["priority"]) == ("webp", 7)
    assert api.c.s3.get(api.c.output_bucket, job["source"]["key"]) == PICTURE
    view = finished(api, client, job["id"])
    assert view["status"] == "succeeded", view
    assert httpx.get(view["output"]["url"]).content[:4] == b"RIFF"


def test_the_same_image_and_options_again_are_the_same_job(api: Deployment) -> None:
    client = api.client()
    picture = square((60, 40), (10, 10, 50, 30), (20, 200, 20))
    first = upload(client, picture, {"options": {"format": "png"}})
    again = upload(client, picture, {"options": {"format": "png"}})
    assert (first.status_code, again.status_code) == (202, 200), again.text
    assert again.json()["id"] == first.json()["id"]
    other = upload(client, picture, {"options": {"format": "jpg"}})
    assert other.status_code == 202 and other.json()["id"] != first.json()["id"]
    assert other.json()["source"] == first.json()["source"]  # one object


def test_an_idempotency_key_holds_across_uploads(api: Deployment) -> None:
    client = api.client()
    key = {"Idempotency-Key": f"sku-{uuid.uuid4().hex[:6]}"}
    first = upload(client, square((30, 30), (5, 5, 25, 25), (1, 2, 3)), headers=key)
    again = upload(client, square((30, 30), (5, 5, 25, 25), (1, 2, 3)), headers=key)
    assert (first.status_code, again.status_code) == (202, 200)
    clash = upload(client, square((30, 30), (5, 5, 25, 25), (3, 2, 1)), headers=key)
    assert problem(clash, 409, "idempotency_conflict")["fields"] == ["source.key"]


def test_an_image_over_the_upload_limit_is_413_and_not_stored(api: Deployment) -> None:
    client = api.client()
    big = b"\x89PNG" + bytes(UPLOAD_MAX)  # under the body limit, over the image limit
    detail = problem(upload(client, big), 413, "upload_too_large")["detail"]
    assert f"the limit of {UPLOAD_MAX} bytes" in detail
    # over the body limit: the door answers before the route reads anything
    problem(upload(client, bytes(BODY_MAX + 1)), 413, "body_too_large")
    stored = list(api.c.s3.list_keys(api.c.output_bucket, "uploads/"))
    assert hashlib.sha256(big).hexdigest() not in " ".join(stored)


@pytest.mark.parametrize(("data", "code"), [
    (b"", "not_an_image"), (b"name,sku\nshoe,42\n", "not_an_image"),
    (PICTURE[:20], "corrupt_image"), (square((8, 8), (1, 1, 7, 7), fmt="GIF"),
                                      "unsupported_format")])
def test_wrong_content_is_422_with_the_decoders_reason(api: Deployment, data: bytes,
                                                       code: str) -> None:
    client = api.client()
    before = len(api.c.ledger.list_jobs(tenant="acme"))
    answer = upload(client, data)
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] in {code, "not_an_image", "corrupt_image"}
    assert len(api.c.ledger.list_jobs(tenant="acme")) == before


@pytest.mark.parametrize(("parts", "where"), [
    ({"request": "{not json"}, "body.request"),
    ({"request": json.dumps({"source": {"bucket": "photos", "key": "a.png"}})},
     "body.request.source"),
    ({"request": json.dumps({"priority": 1000})}, "body.request.priority"),
    ({"request": "[" * 200 + "]" * 200}, "body.request"),
])
def test_a_bad_request_part_is_422_before_the_image_is_stored(
        api: Deployment, parts: dict[str, str], where: str) -> None:
    client = api.client()
    picture = square((30, 20), (5, 5, 25, 15), (9, 9, 99))
    answer = client.post("/v1/jobs", files={"image": ("a.png", picture, "image/png")},
                         data=parts)
    assert where in problem(answer, 422, "invalid_request")["detail"]
    digest = hashlib.sha256(picture).hexdigest()
    assert not list(api.c.s3.list_keys(api.c.output_bucket, f"uploads/acme/{digest}"))


def test_no_image_part_is_422(api: Deployment) -> None:
    answer = api.client().post("/v1/jobs", files={"photo": ("a.png", PICTURE, "image/png")})
    assert "body.image" in problem(answer, 422, "invalid_request")["detail"]


def test_without_a_key_both_doors_are_401(api: Deployment) -> None:
    anonymous = api.keep(httpx.Client(base_url=api.url, timeout=30))
    problem(upload(anonymous), 401, "unauthorized")
    problem(anonymous.post("/v1/uploads", json={"content_type": "image/png", "size": 10}), 401,
            "unauthorized")


def test_the_json_body_is_unchanged(api: Deployment) -> None:
    client = api.client(allow=["photos/"])
    made = client.post("/v1/jobs", json={"source": {"bucket": "photos", "key": "j.png"}})
    assert made.status_code == 202, made.text
    problem(client.post("/v1/jobs", content=b"{", headers={"content-type": "application/json"}),
            422, "invalid_request")


# -- presigned PUT --------------------------------------------------------------------------


def test_a_presigned_put_then_a_job_a_worker_cuts_out(api: Deployment) -> None:
    client = api.client()
    picture = square((200, 150), (50, 40, 150, 110), (10, 10, 240))
    digest = hashlib.sha256(picture).hexdigest()
    grant = client.post("/v1/uploads", json={"content_type": "image/png",
                                             "size": len(picture), "sha256": digest})
    assert grant.status_code == 200, grant.text
    offer = grant.json()
    source = offer["source"]
    assert source["bucket"] == api.c.output_bucket
    assert source["key"].startswith("uploads/acme/") and digest not in source["key"]
    signed = parse_qs(urlsplit(offer["url"]).query)["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-length", "content-type", "x-amz-checksum-sha256"} <= set(signed)
    assert offer["headers"]["Content-Length"] == str(len(picture))
    put = httpx.put(offer["url"], content=picture, headers=offer["headers"], timeout=30)
    assert put.status_code == 200, put.text
    made = client.post("/v1/jobs", json={"source": source, "options": {"format": "png"}})
    assert made.status_code == 202, made.text
    view = finished(api, client, made.json()["id"])
    assert view["status"] == "succeeded", view
    assert view["result"]["output_size"][:2] == [200, 150]
    again = client.post("/v1/jobs", json={"source": source, "options": {"format": "png"}})
    assert again.status_code == 200 and again.json()["id"] == view["id"]


def test_an_upload_over_the_input_limit_or_of_another_type_is_refused(api: Deployment) -> None:
    client = api.client()
    huge = api.c.settings.max_input_bytes + 1
    problem(client.post("/v1/uploads", json={"content_type": "image/png", "size": huge}), 413,
            "upload_too_large")
    problem(client.post("/v1/uploads", json={"content_type": "image/gif", "size": 10}), 422,
            "unsupported_format")
    problem(client.post("/v1/uploads", json={"content_type": "text/csv", "size": 10}), 422,
            "invalid_request")


def test_a_put_that_is_not_an_image_dead_letters_its_job(api: Deployment) -> None:
    client = api.client()
    text = b"not an image at all"
    offer = client.post("/v1/uploads", json={"content_type": "image/jpeg",
                                             "size": len(text)}).json()
    assert httpx.put(offer["url"], content=text, headers=offer["headers"]).status_code == 200
    made = client.post("/v1/jobs", json={"source": offer["source"]})
    view = finished(api, client, made.json()["id"])
    assert (view["status"], view["error"]) == ("dead", "not_an_image")


def test_another_tenants_upload_is_not_a_source(api: Deployment) -> None:
    acme, globex = api.client("acme"), api.client("globex", allow=[f"{api.c.output_bucket}/"])
    mine = upload(acme).json()["source"]
    offer = acme.post("/v1/uploads", json={"content_type": "image/png", "size": 10}).json()
    for source in (mine, offer["source"]):
        refused = globex.post("/v1/jobs", json={"source": {"bucket": source["bucket"],
                                                           "key": source["key"]}})
        problem(refused, 403, "source_not_allowed")


# -- the door's rate ------------------------------------------------------------------------


@pytest.fixture
def slow(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[Deployment]:
    with cluster(tmp_path_factory.mktemp("uploads-rate"), s3_endpoint, redis_db=REDIS_DB,
                 API_RATE_PER_SECOND="0.01", API_RATE_BURST="2") as c, \
            serve(api_app(c.settings)) as url:
        made = Deployment(c, url, TenantStore(c.ledger.engine))
        yield made
        made.close()


@pytest.mark.parametrize("door", ["multipart", "uploads"])
def test_both_doors_take_the_keys_rate(slow: Deployment, door: str) -> None:
    client = slow.client()

    def call() -> httpx.Response:
        if door == "multipart":
            return upload(client)
        return client.post("/v1/uploads", json={"content_type": "image/png", "size": 10})

    assert [call().status_code for _ in range(2)] in ([202, 200], [200, 200])
    limited = problem(call(), 429, "rate_limited")
    assert limited["retry_after"] > 0
