"""What the review page reads, over real HTTP with PostgreSQL and moto's S3: the tenant's batches
newest first and only its own, and previews kept in the output bucket."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from tests.distkit import Cluster, cluster, serve
from tests.pictures import square

pytestmark = [pytest.mark.postgres]


class Api:
    def __init__(self, c: Cluster, url: str) -> None:
        self.c, self.url = c, url
        self.tenants = TenantStore(c.ledger.engine)
        self.clients: list[httpx.Client] = []

    def client(self, tenant: str) -> httpx.Client:
        self.tenants.save(tenant, allowed_sources=["photos/"])
        _, key = self.tenants.create_key(tenant)
        made = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"},
                            timeout=30)
        self.clients.append(made)
        return made


@pytest.fixture
def api(tmp_path: Path, s3_endpoint: str) -> Iterator[Api]:
    with cluster(tmp_path, s3_endpoint, redis_db=6, SEGMENTER="fake") as c, \
            serve(api_app(c.settings)) as url:
        made = Api(c, url)
        try:
            yield made
        finally:
            for client in made.clients:
                client.close()


def batch(client: httpx.Client, label: str, key: str = "a.png") -> str:
    made = client.post("/v1/batches", json={"label": label,
                                            "items": [{"bucket": "photos", "key": key}]})
    assert made.status_code == 202, made.text
    return str(made.json()["id"])


def test_a_tenant_lists_its_own_batches_newest_first(api: Api) -> None:
    acme, globex = api.client("acme"), api.client("globex")
    first, second = batch(acme, "first", "a.png"), batch(acme, "second", "b.png")
    batch(globex, "theirs")
    listed = acme.get("/v1/batches").json()["items"]
    assert [(b["id"], b["label"]) for b in listed] == [(second, "second"), (first, "first")]
    assert listed[0]["counts"]["queued"] == 1 and "estimated_finish" in listed[0]
    assert [b["id"] for b in acme.get("/v1/batches", params={"limit": 1}).json()["items"]] \
        == [second]
    assert acme.get("/v1/batches", params={"limit": 0}).status_code == 422


def test_a_source_preview_is_kept_in_the_output_bucket_and_private_to_the_tenant(
        api: Api) -> None:
    acme, globex = api.client("acme"), api.client("globex")
    api.c.put_image("shoe.png", square((600, 400), (100, 100, 300, 300)))
    job = acme.post("/v1/jobs", json={"source": {"bucket": "photos", "key": "shoe.png"}}).json()
    answer = acme.get(f"/v1/jobs/{job['id']}/preview/source", params={"size": "large"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.headers["cache-control"].startswith("private")
    [kept] = api.c.s3.list_keys(api.c.output_bucket, f"previews/acme/{job['id']}/")
    assert kept.startswith(f"previews/acme/{job['id']}/source-768-")
    theirs = globex.get(f"/v1/jobs/{job['id']}/preview/source")
    assert theirs.status_code == 404 and theirs.json()["code"] == "not_found"
    unknown = acme.get(f"/v1/jobs/{uuid.uuid4()}/preview/cutout")
    assert unknown.status_code == 404
    assert acme.get(f"/v1/jobs/{job['id']}/preview/cutout").json()["code"] \
        == "job_not_succeeded"
