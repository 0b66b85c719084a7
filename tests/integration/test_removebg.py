"""``POST /v1.0/removebg`` over real HTTP, with PostgreSQL, Redis, moto's S3 and a real worker:
our own requests (every answer and refusal) and the npm ``remove.bg`` client's round trip.

The client is the published package, pinned in ``tests/clients/removebg/package-lock.json`` and
installed by ``npm ci`` on first use (into the ignored ``node_modules`` there); how it is pointed
at this API is in ``tests/clients/removebg/roundtrip.js``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from pipeline.adapters.queue.memory import MemoryQueue
from pipeline.api.app import create_app
from pipeline.api.deps import ApiDeps
from tests.distkit import Cluster, cluster, serve
from tests.pictures import square

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]
PATH = "/v1.0/removebg"
MAX_IMAGE = 200_000
CLIENT = Path(__file__).resolve().parents[1] / "clients" / "removebg"
PICTURE = square((120, 80), (30, 20, 90, 60))


@dataclass
class Deployment:
    c: Cluster
    url: str
    key: str

    def post(self, key: str | None = "", **kwargs: Any) -> httpx.Response:
        headers = {**({"X-Api-Key": key or self.key} if key is not None else {}),
                   **kwargs.pop("headers", {})}
        return httpx.post(self.url + PATH, headers=headers, timeout=90, **kwargs)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[Deployment]:
    with cluster(tmp_path_factory.mktemp("removebg"), s3_endpoint, redis_db=12,
                 SEGMENTER="fake", REMOVEBG_MAX_IMAGE_BYTES=str(MAX_IMAGE),
                 API_MAX_BODY_BYTES=str(4 * MAX_IMAGE)) as c, \
            serve(api_app(c.settings)) as url:
        tenants = TenantStore(c.ledger.engine)
        tenants.save("acme", allowed_sources=["photos/shoes/"])
        _, key = tenants.create_key("acme")
        c.start_worker(concurrency=1)
        yield Deployment(c, url, key)


def errors_of(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """remove.bg's error shape, with ``status`` and the first error's ``code``."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/json", answer.headers
    first: dict[str, Any] = answer.json()["errors"][0]
    assert first["code"] == code and first["title"], first
    return first


def image_of(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


# -- our own requests --------------------------------------------------------------------------

def test_an_uploaded_file_comes_back_cut_out_with_remove_bg_headers(api: Deployment) -> None:
    answer = api.post(files={"image_file": ("shoe.png", PICTURE, "image/png")},
                    data={"size": "preview", "type": "product"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    cut = image_of(answer.content)
    assert (cut.mode, cut.size) == ("RGBA", (120, 80))
    assert (answer.headers["x-width"], answer.headers["x-height"]) == ("120", "80")
    assert (answer.headers["x-type"], answer.headers["x-credits-charged"]) == ("other", "0")
    job = api.c.ledger.get(uuid.UUID(answer.headers["x-clipline-job-id"]), tenant="acme")
    assert job.priority == api.c.settings.interactive_priority
    digest = hashlib.sha256(PICTURE).hexdigest()
    assert (job.bucket, job.key) == (api.c.output_bucket, f"uploads/acme/{digest}")
    again = api.post(files={"image_file": ("shoe.png", PICTURE, "image/png")})
    assert again.headers["x-clipline-job-id"] == answer.headers["x-clipline-job-id"]


def test_base64_in_json_with_a_background_colour_is_a_jpeg(api: Deployment) -> None:
    answer = api.post(json={"image_file_b64": base64.b64encode(PICTURE).decode(),
                          "bg_color": "00ff00", "format": "auto"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    assert image_of(answer.content).mode == "RGB"


def test_accept_json_answers_base64(api: Deployment) -> None:
    answer = api.post(files={"image_file": ("shoe.png", PICTURE)}, data={"channels": "alpha"},
                    headers={"Accept": "application/json"})
    assert answer.status_code == 200, answer.text
    mask = image_of(base64.b64decode(answer.json()["data"]["result_b64"]))
    assert (mask.mode, mask.size) == ("L", (120, 80))
    assert answer.headers["x-width"] == "120"


def test_an_s3_url_inside_the_allowlist_is_read_from_there(api: Deployment) -> None:
    url = api.c.put_image("shoes/red.png", PICTURE)
    answer = api.post(data={"image_url": url, "crop": "true", "crop_margin": "0px"})
    assert answer.status_code == 200, answer.text
    assert image_of(answer.content).size[0] <= 120


@pytest.mark.parametrize(("url", "code"), [
    ("s3://photos/hats/blue.png", "source_not_allowed"),
    ("s3://other-bucket/shoes/red.png", "source_not_allowed"),
    ("https://example.com/shoe.png", "unsupported_parameter"),
    ("http://127.0.0.1:6379/", "unsupported_parameter"),
    ("s3://photos/shoes/never-put.png", "object_missing"),
])
def test_urls_outside_the_allowlist_or_not_s3_are_refused(api: Deployment, url: str,
                                                          code: str) -> None:
    errors_of(api.post(data={"image_url": url}), 400, code)


@pytest.mark.parametrize(("url", "code"), [
    ("s3://no-such-bucket-here/a.png", "object_missing"),
    ("s3://Not_A_Bucket!/a.png", "invalid_parameter"),
    ("s3://photos/a\x00.png", "invalid_parameter"),
    ("s3://photos/" + "k" * 2000, "invalid_parameter"),
])
def test_any_source_tenants_get_400_for_urls_s3_cannot_answer(api: Deployment, url: str,
                                                              code: str) -> None:
    tenants = TenantStore(api.c.ledger.engine)
    tenants.save("everything", allow_any=True)
    _, key = tenants.create_key("everything")
    errors_of(api.post(key, json={"image_url": url}), 400, code)


def test_a_missing_or_bad_key_is_remove_bg_403(api: Deployment) -> None:
    files = {"image_file": ("shoe.png", PICTURE)}
    assert errors_of(api.post(None, files=files), 403, "auth_failed")
    assert errors_of(api.post("clp_not-a-key", files=files), 403, "auth_failed")


def test_too_large_is_413_before_or_after_the_body(api: Deployment) -> None:
    big = os.urandom(MAX_IMAGE + 1)
    errors_of(api.post(files={"image_file": ("big.png", big)}), 413, "file_too_large")
    errors_of(api.post(files={"image_file": ("big.png", big * 4)}), 413, "file_too_large")


def test_what_is_not_an_image_is_400_with_its_reason(api: Deployment) -> None:
    errors_of(api.post(files={"image_file": ("a.png", b"not an image")}), 400, "not_an_image")
    errors_of(api.post(json={"image_file_b64": "@@@"}), 400, "invalid_parameter")
    errors_of(api.post(content=b"{", headers={"Content-Type": "application/json"}), 400,
              "invalid_body")
    errors_of(api.post(content=b"x", headers={"Content-Type": "text/plain"}), 400,
              "invalid_content_type")
    errors_of(api.post(data={"image_file": "text, not a file"}), 400, "invalid_parameter")
    errors_of(api.post(files={"image_file": ("a.png", b"")}), 400, "invalid_parameter")
    errors_of(api.post(json={"image_file_b64": 12}), 400, "invalid_parameter")
    errors_of(api.post(json={"image_url": ["s3://photos/shoes/a.png"]}), 400, "invalid_parameter")
    errors_of(api.post(json=["image_url"]), 400, "invalid_body")


def test_a_job_that_fails_in_the_worker_is_400_with_its_reason(api: Deployment) -> None:
    api.c.put_image("shoes/broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    found = errors_of(api.post(data={"image_url": "s3://photos/shoes/broken.png"}), 400,
                      "corrupt_image")
    assert api.c.ledger.get(uuid.UUID(found["job_id"]), tenant="acme").status == "dead"


@pytest.mark.parametrize(("fields", "code"), [
    ({"format": "zip"}, "unsupported_parameter"),
    ({"bg_image_url": "https://example.com/bg.jpg"}, "unsupported_parameter"),
    ({"roi": "10% 10% 90% 90%"}, "unsupported_parameter"),
    ({"size": "enormous"}, "invalid_parameter"),
    ({"colour": "red"}, "unknown_parameter"),
    ({}, "missing_source"),
])
def test_refused_parameters_are_400_before_any_job(api: Deployment, fields: dict[str, str],
                                                   code: str) -> None:
    before = len(api.c.ledger.list_jobs(tenant="acme"))
    source = {} if code == "missing_source" else {"image_file": ("a.png", PICTURE)}
    errors_of(api.post(files=source or None, data=fields or {"size": "auto"}), 400, code)
    assert len(api.c.ledger.list_jobs(tenant="acme")) == before


def test_a_job_not_done_in_time_is_504_with_the_job_to_poll(api: Deployment) -> None:
    # The same services, but a queue that wakes no worker: the job stays queued.
    settings = api.c.settings.model_copy(update={"removebg_wait_seconds": 0.5})
    app = create_app(ApiDeps(settings=settings, ledger=api.c.ledger,
                             tenants=TenantStore(api.c.ledger.engine), queue=MemoryQueue(),
                             store=api.c.s3))
    with serve(app) as url:
        late = Deployment(api.c, url, api.key)
        answer = late.post(files={"image_file": ("b.png", square((50, 50), (5, 5, 20, 20)))})
        found = errors_of(answer, 504, "result_pending")
        assert answer.headers["location"] == found["job_url"] == f"/v1/jobs/{found['job_id']}"
        polled = httpx.get(url + found["job_url"], headers={"X-Api-Key": api.key})
        assert polled.status_code == 200 and polled.json()["status"] == "queued"


# -- the npm remove.bg client -------------------------------------------------------------------

@pytest.fixture(scope="module")
def node() -> str:
    """``node`` with the client installed from the lock file (once per lock file)."""
    found, npm = shutil.which("node"), shutil.which("npm")
    if found is None or npm is None:
        pytest.fail("the remove.bg client test needs Node.js and npm (Node 20: apt-get install "
                    "nodejs npm); neither may be skipped")
    lock = (CLIENT / "package-lock.json").read_bytes()
    stamp = CLIENT / "node_modules" / ".clipline-lock-sha256"
    digest = hashlib.sha256(lock).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=CLIENT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
        stamp.write_text(digest)
    return found


def client(node: str, api: Deployment, call: str, **options: Any) -> dict[str, Any]:
    """One call of the client; its resolved result or its rejection."""
    done = subprocess.run(
        [node, "roundtrip.js", call, json.dumps({"apiKey": api.key, **options})], cwd=CLIENT,
        env={**os.environ, "CLIPLINE_URL": api.url}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_the_client_uploads_a_file(node: str, api: Deployment, tmp_path: Path) -> None:
    (tmp_path / "shoe.png").write_bytes(PICTURE)
    out = tmp_path / "shoe-cut.png"
    answer = client(node, api, "file", path=str(tmp_path / "shoe.png"), size="regular",
                    type="product", outputFile=str(out))
    assert answer["ok"], answer
    result = answer["result"]
    cut = image_of(out.read_bytes())
    assert (cut.mode, cut.size) == ("RGBA", (120, 80))
    assert (result["resultWidth"], result["resultHeight"]) == ("120", "80")
    assert (result["creditsCharged"], result["detectedType"]) == ("0", "other")
    assert base64.b64decode(result["base64img"]) == out.read_bytes()


def test_the_client_sends_base64_with_crop_and_a_colour(node: str, api: Deployment) -> None:
    answer = client(node, api, "base64", base64img=base64.b64encode(PICTURE).decode(),
                    crop=True, crop_margin="10%", bg_color="ffffff")
    assert answer["ok"], answer
    cut = image_of(base64.b64decode(answer["result"]["base64img"]))
    assert (cut.format, cut.mode) == ("JPEG", "RGB")
    assert cut.size == (int(answer["result"]["resultWidth"]),
                        int(answer["result"]["resultHeight"]))


def test_the_client_reads_an_allowed_s3_url(node: str, api: Deployment) -> None:
    url = api.c.put_image("shoes/client.png", PICTURE)
    answer = client(node, api, "url", url=url, size="auto")
    assert answer["ok"], answer
    assert image_of(base64.b64decode(answer["result"]["base64img"])).size == (120, 80)


def test_the_client_gets_remove_bg_errors(node: str, api: Deployment) -> None:
    refused = client(node, api, "url", url="https://example.com/shoe.png")
    assert not refused["ok"] and refused["errors"][0]["code"] == "unsupported_parameter"
    unknown = client(node, api, "url", url="s3://photos/shoes/client.png", apiKey="clp_wrong")
    assert not unknown["ok"] and unknown["errors"][0]["code"] == "auth_failed"

