"""What the review page adds to the API, through the whole ASGI stack with the in-memory ledger
and store: ``GET /v1/jobs/{id}/preview/{kind}``, ``GET /v1/batches`` and the ``/ui`` shell.

Every failure is a problem with its own code, never a 5xx."""

from __future__ import annotations

import io
import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.adapters.ledger.memory import MemoryLedger
from pipeline.adapters.queue.memory import MemoryQueue
from pipeline.adapters.segmenters.fake import FakeSegmenters
from pipeline.api.app import create_app
from pipeline.api.deps import ApiDeps
from pipeline.api.previews import SIDES
from pipeline.api.ui import FILES
from pipeline.errors import ObjectMissing
from pipeline.jobs import Job, JobSpec
from pipeline.options import OutputOptions
from pipeline.process import process_job
from pipeline.settings import Settings
from tests.unit.test_api_door import Answer, Tenants, assert_problem, call, keyed
from tests.unit.test_api_recompose import PresigningStore
from tests.unit.test_recompose import discs

OUT = "out"


class Api:
    def __init__(self, *, cache: str | None = OUT, with_store: bool = True) -> None:
        self.ledger, self.store = MemoryLedger(), PresigningStore()
        self.ledger.ensure_tenant("acme")
        self.store.put("photos", "discs.png", discs(), content_type="image/png")
        self.store.put("photos", "notes.txt", b"not an image", content_type="text/plain")
        settings = Settings(api_rate_burst=1000, s3_output_bucket=cache)  # type: ignore[call-arg]
        self.app = create_app(ApiDeps(settings=settings, ledger=self.ledger, tenants=Tenants(),
                                      queue=MemoryQueue(),
                                      store=self.store if with_store else None))

    def job(self, key: str = "discs.png", *, run: bool = True, **options: Any) -> Job:
        spec = JobSpec("photos", key, None, OutputOptions.parse(options).normalised(), "fake")
        job = self.ledger.submit(spec, tenant="acme").job
        if not run:
            return job
        claim = self.ledger.claim(job.id, worker="test")
        assert claim is not None
        result = process_job(claim.job, self.store, FakeSegmenters.serving("fake"),
                             output_bucket=OUT)
        return self.ledger.complete(job.id, claim.token, result)  # type: ignore[no-any-return]

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return call(self.app, "GET", path, headers=keyed() if headers is None else headers)


@pytest.fixture
def api() -> Api:
    return Api()


def image(answer: Answer) -> Image.Image:
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(answer.body))


def cached(api: Api) -> list[str]:
    return sorted(k for b, k in api.store.objects if b == OUT and k.startswith("previews/"))


@pytest.mark.parametrize(("kind", "mode"), [("source", "RGB"), ("cutout", "RGBA"),
                                            ("mask", "L")])
def test_a_preview_is_a_small_png_kept_under_a_derived_key(api: Api, kind: str,
                                                           mode: str) -> None:
    job = api.job()
    shown = image(api.get(f"/v1/jobs/{job.id}/preview/{kind}"))
    assert shown.mode == mode and max(shown.size) <= SIDES["small"]
    [key] = cached(api)
    assert key.startswith(f"previews/acme/{job.id}/{kind}-{SIDES['small']}-")
    api.store.put(OUT, key, b"kept", content_type="image/png")  # read, not made again
    again = api.get(f"/v1/jobs/{job.id}/preview/{kind}")
    assert again.status == 200 and again.body == b"kept"


def test_a_job_that_finishes_again_gets_a_new_preview_key(api: Api) -> None:
    job = api.job()
    api.get(f"/v1/jobs/{job.id}/preview/cutout")
    assert job.finished_at is not None
    later = replace(job, finished_at=job.finished_at + timedelta(minutes=5))
    api.ledger._jobs[job.id] = later  # as after a redrive and a second success
    api.get(f"/v1/jobs/{job.id}/preview/cutout")
    assert len(cached(api)) == 2


def test_without_an_output_bucket_previews_are_made_and_kept_nowhere() -> None:
    api = Api(cache=None)
    job = api.job()
    image(api.get(f"/v1/jobs/{job.id}/preview/cutout"))
    assert not any(k.startswith("previews/") for _, k in api.store.objects)


def test_an_unknown_job_is_404(api: Api) -> None:
    assert_problem(api.get(f"/v1/jobs/{uuid.uuid4()}/preview/source"), 404, "not_found")


def test_another_tenants_job_is_404_as_if_it_did_not_exist(api: Api) -> None:
    spec = JobSpec("photos", "discs.png", None, OutputOptions.parse({}).normalised(), "fake")
    other = api.ledger.submit(spec, tenant="globex").job
    assert_problem(api.get(f"/v1/jobs/{other.id}/preview/source"), 404, "not_found")


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer clp_wrong"}],
                         ids=["no-key", "wrong-key"])
def test_without_a_live_key_a_preview_is_401(api: Api, headers: dict[str, str]) -> None:
    job = api.job()
    assert_problem(api.get(f"/v1/jobs/{job.id}/preview/cutout", headers), 401, "unauthorized")


def test_a_source_that_is_not_an_image_is_its_reason_never_a_5xx(api: Api) -> None:
    job = api.job("notes.txt", run=False)
    assert_problem(api.get(f"/v1/jobs/{job.id}/preview/source"), 422, "not_an_image")


def test_a_source_that_is_gone_is_object_missing(api: Api) -> None:
    job = api.job("gone.png", run=False)
    assert_problem(api.get(f"/v1/jobs/{job.id}/preview/source"), 422, ObjectMissing.reason)


@pytest.mark.parametrize("kind", ["cutout", "mask"])
def test_a_cutout_or_mask_of_a_job_not_succeeded_is_409(api: Api, kind: str) -> None:
    job = api.job(run=False)
    assert_problem(api.get(f"/v1/jobs/{job.id}/preview/{kind}"), 409, "job_not_succeeded")


def test_the_mask_of_a_cutout_without_alpha_is_409_no_mask(api: Api) -> None:
    job = api.job(format="jpg", bg_color="#ffffff")
    assert_problem(api.get(f"/v1/jobs/{job.id}/preview/mask"), 409, "no_mask")


def test_an_unknown_kind_or_size_is_422(api: Api) -> None:
    job = api.job()
    assert_problem(api.get(f"/v1/jobs/{job.id}/preview/layers"), 422, "invalid_request")
    answer = call(api.app, "GET", f"/v1/jobs/{job.id}/preview/cutout", headers=keyed())
    assert answer.status == 200  # the default size
    assert_problem(api.get(f"/v1/jobs/{job.id}x/preview/cutout"), 422, "invalid_request")


def test_without_object_storage_a_preview_is_503() -> None:
    api = Api(with_store=False)
    spec = JobSpec("photos", "discs.png", None, OutputOptions.parse({}).normalised(), "fake")
    job = api.ledger.submit(spec, tenant="acme").job
    assert_problem(api.get(f"/v1/jobs/{job.id}/preview/source"), 503, "storage_unavailable")


def test_the_batch_listing_needs_a_key_and_the_memory_ledger_lists_none(api: Api) -> None:
    assert_problem(api.get("/v1/batches", {}), 401, "unauthorized")
    answer = api.get("/v1/batches")
    assert answer.status == 200 and answer.json() == {"items": []}


@pytest.mark.parametrize("name", sorted(FILES))
def test_the_shell_is_served_without_a_key_and_allows_nothing_from_elsewhere(
        api: Api, name: str) -> None:
    answer = api.get("/ui/" if name == "index.html" else f"/ui/{name}", {})
    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == FILES[name]
    assert answer.headers["content-security-policy"].startswith("default-src 'self';")
    body = answer.body.replace(b'xmlns="http://www.w3.org/2000/svg"', b"")  # a name, not a fetch
    assert b"http://" not in body and b"https://" not in body


def test_the_shell_is_not_part_of_the_api_contract(api: Api) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert not any(p.startswith("/ui") for p in paths)
    assert "/v1/jobs/{job_id}/preview/{kind}" in paths and "get" in paths["/v1/batches"]


def test_the_static_files_ship_in_the_package() -> None:
    static = Path(__import__("pipeline.api.ui").api.ui.STATIC)
    assert sorted(p.name for p in static.iterdir()) == sorted(FILES)


@pytest.mark.parametrize("name", ["nothing.js", "..%2fui.py", "index.htm"])
def test_a_file_the_shell_does_not_have_is_404(api: Api, name: str) -> None:
    assert_problem(api.get(f"/ui/{name}", {}), 404, "not_found")
