"""``POST /v1/jobs/{id}/recompose`` through the whole ASGI stack, with the in-memory ledger and
store and the fake segmenter (the worker's part is ``process_job``, run here in-line).

Every refusal is a problem with its own code, and no body a client can send gets a 5xx."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from pipeline.adapters.ledger.memory import MemoryLedger
from pipeline.adapters.queue.memory import MemoryQueue
from pipeline.adapters.segmenters.fake import FakeSegmenters
from pipeline.adapters.storage.memory import MemoryStore
from pipeline.api.app import create_app
from pipeline.api.deps import ApiDeps
from pipeline.jobs import Job, JobSpec
from pipeline.options import OutputOptions
from pipeline.process import process_job
from pipeline.recompose import selection_key
from pipeline.settings import Settings
from tests.unit.test_api_door import Answer, Tenants, assert_problem, call, keyed
from tests.unit.test_recompose import DISCS, discs, part_at, pixels


class PresigningStore(MemoryStore):
    def presign(self, bucket: str, key: str, expires: int = 3600) -> str:
        return f"https://s3.example/{bucket}/{key}?expires={expires}"

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix))


class Api:
    def __init__(self, tmp_path: Path, *, with_store: bool = True) -> None:
        self.ledger, self.store = MemoryLedger(), PresigningStore()
        self.ledger.ensure_tenant("acme")
        self.store.put("photos", "discs.png", discs(), content_type="image/png")
        settings = Settings(api_rate_burst=1000)  # type: ignore[call-arg]
        self.app: FastAPI = create_app(ApiDeps(
            settings=settings, ledger=self.ledger, tenants=Tenants(), queue=MemoryQueue(),
            store=self.store if with_store else None))

    def job(self, options: dict[str, Any], *, run: bool = True, tenant: str = "acme") -> Job:
        spec = JobSpec("photos", "discs.png", None, OutputOptions.parse(options).normalised(),
                       "fake")
        job = self.ledger.submit(spec, tenant=tenant).job
        if not run:
            return job
        claim = self.ledger.claim(job.id, worker="test")
        assert claim is not None
        result = process_job(claim.job, self.store, FakeSegmenters.serving("fake"),
                             output_bucket="out")
        return self.ledger.complete(job.id, claim.token, result)  # type: ignore[no-any-return]

    def recompose(self, job: Job | str, body: Any) -> Answer:
        ident = job if isinstance(job, str) else job.id
        return call(self.app, "POST", f"/v1/jobs/{ident}/recompose",
                    [json.dumps(body).encode()], keyed())


@pytest.fixture
def api(tmp_path: Path) -> Api:
    return Api(tmp_path)


def test_the_jobs_own_selection_writes_the_same_bytes_at_a_key_of_its_own(api: Api) -> None:
    job = api.job({"subject": "main", "layers": True})
    result = job.result or {}
    shown = sorted(p["id"] for p in result["layers"] if p["role"] != "dropped")
    answer = api.recompose(job, {"layers": shown})
    assert answer.status == 200, answer.body
    body = answer.json()
    out = result["output"]
    key = selection_key(out["key"], shown)
    assert body["output"] == {"bucket": "out", "key": key,
                              "url": f"https://s3.example/out/{key}?expires=3600"}
    written = api.store.objects[("out", key)]
    assert written.data == api.store.objects[("out", out["key"])].data
    assert written.metadata["job-id"] == str(job.id)
    assert body["bytes"] == len(written.data) and body["content_type"] == "image/png"
    assert [p["shown"] for p in body["layers"]] == [p["role"] != "dropped"
                                                   for p in result["layers"]]
    assert body["result"]["shown"] == shown
    # The same set again: the same key, overwritten.
    assert api.recompose(job, {"layers": shown[::-1]}).json()["output"]["key"] == key


def test_switching_one_part_off_writes_an_output_without_it(api: Api) -> None:
    job = api.job({"layers": True})
    parts = (job.result or {})["layers"]
    medium = part_at(parts, DISCS[1][0], DISCS[1][1])
    shown = [p["id"] for p in parts if p is not medium]
    answer = api.recompose(job, {"layers": shown})
    assert answer.status == 200, answer.body
    image = pixels(api.store.objects[("out", answer.json()["output"]["key"])].data)
    assert image[DISCS[1][1], DISCS[1][0], 3] == 0 and image[DISCS[0][1], DISCS[0][0], 3] == 255
    assert [p["shown"] for p in answer.json()["layers"]] == [p is not medium for p in parts]


def test_a_job_not_succeeded_is_409(api: Api) -> None:
    job = api.job({"layers": True}, run=False)
    problem = assert_problem(api.recompose(job, {"layers": [0]}), 409, "job_not_succeeded")
    assert "queued" in problem["detail"]


def test_a_job_without_layers_is_409_saying_how_to_get_them(api: Api) -> None:
    job = api.job({})
    problem = assert_problem(api.recompose(job, {"layers": [0]}), 409, "layers_not_recorded")
    assert "layers=true" in problem["detail"]


def test_another_tenants_job_and_an_unknown_id_are_404_alike(api: Api) -> None:
    theirs = api.job({"layers": True}, tenant="other")
    assert_problem(api.recompose(theirs, {"layers": [0]}), 404, "not_found")
    assert_problem(api.recompose("0192f0e4-0000-7000-8000-000000000000", {"layers": [0]}),
                   404, "not_found")
    assert_problem(api.recompose("not-a-uuid", {"layers": [0]}), 422, "invalid_request")


def test_a_part_id_the_job_does_not_have_is_422_unknown_layer(api: Api) -> None:
    job = api.job({"layers": True})
    problem = assert_problem(api.recompose(job, {"layers": [0, 3]}), 422, "unknown_layer")
    assert "3" in problem["detail"] and "ids 0 to 2" in problem["detail"]
    assert not any(".layers-" in key for _, key in api.store.objects)


@pytest.mark.parametrize("fmt", ["psd", "ora"])
def test_layered_writes_a_designer_file_with_a_layer_per_part(api: Api, fmt: str) -> None:
    job = api.job({"subject": "main", "layers": True})
    parts = (job.result or {})["layers"]
    shown = [p["id"] for p in parts if p["role"] == "main"]
    answer = api.recompose(job, {"layers": shown, "layered": fmt})
    assert answer.status == 200, answer.body
    key = answer.json()["output"]["key"]
    assert key == selection_key((job.result or {})["output"]["key"], shown, extension=fmt)
    assert key.endswith(f".{fmt}") and answer.json()["result"]["shown"] == shown
    names = answer.json()["result"]["layers"]
    assert names[0] == "main" and names[-1] == "original" and len(names) == len(parts) + 1
    assert api.store.objects[("out", key)].data[:4] in (b"8BPS", b"PK\x03\x04")


@pytest.mark.parametrize("body", [
    {"layers": [0], "layered": "tiff"}, {"layers": [0], "layered": ""},
    {"layers": [0], "layered": 1},
], ids=lambda body: json.dumps(body)[:40])
def test_a_bad_layered_format_is_422(api: Api, body: Any) -> None:
    job = api.job({"layers": True})
    assert_problem(api.recompose(job, body), 422, "invalid_request")


@pytest.mark.parametrize("body", [
    {}, None, [], {"layers": None}, {"layers": "0,1"}, {"layers": 0}, {"layers": ["0"]},
    {"layers": [True]}, {"layers": [1.0]}, {"layers": [1.5]}, {"layers": [0, 0]},
    {"layers": [-1]}, {"layers": [10**30]}, {"layers": [1_000_001]},
    {"layers": list(range(10_001))}, {"layers": [0], "show": [1]}, {"layers": [[0]]},
    {"layers": [{"id": 0}]},
], ids=lambda body: json.dumps(body)[:40])
def test_a_bad_body_is_422_never_a_5xx(api: Api, body: Any) -> None:
    job = api.job({"layers": True})
    assert_problem(api.recompose(job, body), 422, "invalid_request")


def test_a_source_gone_since_is_422_object_missing(api: Api) -> None:
    job = api.job({"layers": True})
    del api.store.objects[("photos", "discs.png")]
    assert_problem(api.recompose(job, {"layers": [0]}), 422, "object_missing")


def test_a_mask_gone_since_is_422_object_missing(api: Api) -> None:
    job = api.job({"layers": True})
    mask = (job.result or {})["layers_mask"]
    del api.store.objects[(mask["bucket"], mask["key"])]
    assert_problem(api.recompose(job, {"layers": [0]}), 422, "object_missing")


def test_without_an_object_store_it_is_503(tmp_path: Path) -> None:
    bare = Api(tmp_path, with_store=False)
    job = bare.job({"layers": True})
    assert_problem(bare.recompose(job, {"layers": [0]}), 503, "storage_unavailable")


def test_the_route_is_in_the_openapi_contract(api: Api) -> None:
    spec = json.loads(call(api.app, "GET", "/openapi.json").body)
    route = spec["paths"]["/v1/jobs/{job_id}/recompose"]["post"]
    assert {"200", "409", "422"} <= set(route["responses"])
