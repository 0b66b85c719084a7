"""Attacker's checklist, uploads: a tenant's uploads are its own. No other tenant makes
Clipline read them through any door (one job, batch items, a prefix, a manifest, the preview
of a job made from one), whatever its allowlist or ``allow_any`` says; and an upload lands only
under the uploading tenant's own name, whatever the request says."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.adapters.storage.memory import MemoryStore
from pipeline.settings import Settings
from tests.pictures import square
from tests.security.conftest import World, job

UPLOADS = "tenant-uploads"
PICTURE = square((40, 30), (10, 10, 30, 20))


class Store(MemoryStore):
    """The in-memory store, recording the API's reads, and with the API's ``list_keys`` and
    ``presign`` (GET) too."""

    def __init__(self) -> None:
        super().__init__()
        self.touched: list[tuple[str, str, str]] = []

    def get(self, bucket: str, key: str, *, version: str | None = None) -> bytes:
        self.touched.append(("get", bucket, key))
        return super().get(bucket, key, version=version)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        self.touched.append(("list", bucket, prefix))
        return sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix))

    def presign(self, bucket: str, key: str, expires: int = 3600) -> str:
        return f"https://signed.example/{bucket}/{key}"


@pytest.fixture
def uploads(world: World) -> Iterator[Store]:
    """The world, with an upload bucket and a store that takes uploads."""
    settings = Settings(**{**world.deps.settings.model_dump(), "upload_bucket": UPLOADS})
    store = Store()
    world.deps.settings, world.deps.store = settings, store
    assert world.deps.settings.upload_area is not None
    yield store


@pytest.fixture
def acme_upload(world: World, uploads: Store) -> dict[str, Any]:
    acme = world.client(world.key("acme"))
    made = acme.post("/v1/jobs", files={"image": ("a.png", PICTURE, "image/png")})
    assert made.status_code == 202, made.text
    return dict(made.json())


@pytest.mark.parametrize("allow", [[], [f"{UPLOADS}/"], [f"{UPLOADS}/uploads/acme/"]])
def test_no_allowlist_opens_another_tenants_uploads(world: World, uploads: Store,
                                                    acme_upload: dict[str, Any],
                                                    allow: list[str]) -> None:
    globex = world.client(world.key("globex", allow))
    source = acme_upload["source"]
    uploads.touched.clear()
    for answer in (
        globex.post("/v1/jobs", json=job(source["key"], source["bucket"])),
        globex.post("/v1/batches", json={"items": [{"bucket": UPLOADS, "key": source["key"]}]}),
        globex.post("/v1/batches", json={"prefix": f"s3://{UPLOADS}/uploads/acme/"}),
        globex.post("/v1/batches", json={"prefix": f"s3://{UPLOADS}/uploads/"}),
        globex.post("/v1/batches", json={"manifest": {"bucket": UPLOADS,
                                                      "key": source["key"]}}),
    ):
        assert answer.status_code == 403, answer.text
        assert answer.json()["code"] == "source_not_allowed"
    assert uploads.touched == []  # nothing read, nothing listed
    assert world.ledger.list_jobs(tenant="globex") == []


def test_allow_any_does_not_open_them_either(world: World, uploads: Store,
                                             acme_upload: dict[str, Any]) -> None:
    world.tenants.save("globex", allow_any=True)
    globex = world.client(world.tenants.create_key("globex")[1])
    source = acme_upload["source"]
    answer = globex.post("/v1/jobs", json=job(source["key"], source["bucket"]))
    assert answer.json()["code"] == "source_not_allowed"
    assert globex.post("/v1/jobs", json=job("x.jpg", "anything")).status_code == 202


@pytest.mark.parametrize("key", ["uploads/acme/../globex/{d}", "uploads/globex/{d}",
                                 "uploads/acme/sub/{d}", "uploads/acme-x/{d}"])
def test_a_key_that_only_looks_like_ones_own_is_refused(world: World, uploads: Store,
                                                         key: str) -> None:
    globex_key = world.key("globex")
    world.client(globex_key).post("/v1/jobs",
                                  files={"image": ("a.png", PICTURE, "image/png")})
    acme = world.client(world.key("acme"))
    digest = hashlib.sha256(PICTURE).hexdigest()
    answer = acme.post("/v1/jobs", json=job(key.format(d=digest), UPLOADS))
    assert answer.status_code == 403 and answer.json()["code"] == "source_not_allowed"


def test_the_same_image_of_two_tenants_is_two_objects_and_two_jobs(
        world: World, uploads: Store, acme_upload: dict[str, Any]) -> None:
    globex = world.client(world.key("globex"))
    theirs = globex.post("/v1/jobs", files={"image": ("a.png", PICTURE, "image/png")}).json()
    assert theirs["source"]["key"].startswith("uploads/globex/")
    assert theirs["id"] != acme_upload["id"]
    assert globex.get(f"/v1/jobs/{acme_upload['id']}").status_code == 404


def test_the_request_part_cannot_name_a_source_or_another_tenant(world: World,
                                                                 uploads: Store) -> None:
    acme = world.client(world.key("acme"))
    for request in ({"source": {"bucket": UPLOADS, "key": "uploads/globex/x"}},
                    {"tenant": "globex"}):
        answer = acme.post("/v1/jobs", files={"image": ("a.png", PICTURE, "image/png")},
                           data={"request": json.dumps(request)})
        assert answer.status_code == 422, answer.text
    assert uploads.objects == {}


def test_a_grant_is_under_ones_own_name_only(world: World, uploads: Store) -> None:
    acme = world.client(world.key("acme"))
    offer = acme.post("/v1/uploads", json={"content_type": "image/png", "size": 10}).json()
    assert offer["source"]["key"].startswith("uploads/acme/")
    refused = acme.post("/v1/uploads", json={"content_type": "image/png", "size": 10,
                                             "key": "uploads/globex/x"})
    assert refused.status_code == 422


def test_a_preview_of_a_job_made_from_an_upload_reads_it_for_its_owner_only(
        world: World, uploads: Store, acme_upload: dict[str, Any]) -> None:
    acme = world.client(world.key("acme"))
    shown = acme.get(f"/v1/jobs/{acme_upload['id']}/preview/source")
    assert shown.status_code == 200, shown.text
