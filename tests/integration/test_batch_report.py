"""A batch's results manifest end to end: the API, a real worker, ``clipline reconcile --once``
writing the report to moto's S3, ``GET /v1/batches/{id}`` linking it, a redrive rewriting it,
and ``clipline status --batch ID --report FILE`` writing the same rows locally."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from tests.distkit import CLIPLINE, Cluster, cluster, serve, wait_for
from tests.pictures import square

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def world(tmp_path: Path, s3_endpoint: str) -> Iterator[tuple[Cluster, httpx.Client]]:
    with cluster(tmp_path, s3_endpoint, redis_db=9, SEGMENTER="fake") as c, \
            serve(api_app(c.settings)) as url:
        tenants = TenantStore(c.ledger.engine)
        tenants.save("acme", allowed_sources=["photos/"])
        key = tenants.create_key("acme")[1]
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                          timeout=30) as client:
            yield c, client


def clipline(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([CLIPLINE, *args], env=c.env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done


def settled(c: Cluster, client: httpx.Client, batch_id: str) -> dict[str, Any]:
    def done() -> bool:
        counts = client.get(f"/v1/batches/{batch_id}").json()["counts"]
        return counts["queued"] + counts["running"] == 0
    wait_for(done, 60, "the batch to finish", c.logs)
    view: dict[str, Any] = client.get(f"/v1/batches/{batch_id}").json()
    return view


def test_a_finished_batch_reports_every_job_and_a_redrive_rewrites_it(
        world: tuple[Cluster, httpx.Client], tmp_path: Path) -> None:
    c, client = world
    c.s3.put("photos", "shoes/red shoe.png", square((64, 48), (20, 10, 40, 30), (200, 30, 30)),
             content_type="image/png")
    made = client.post("/v1/batches", json={
        "items": [{"bucket": "photos", "key": "shoes/red shoe.png"},
                  {"bucket": "photos", "key": "shoes/missing.png"}],
        "output": {"key_template": "{prefix}/{key_dir}/{key_stem}.{ext}"}})
    assert made.status_code == 202, made.text
    batch_id = made.json()["id"]
    c.start_worker(concurrency=1)
    view = settled(c, client, batch_id)
    assert view["report"] is None  # nobody has written it yet
    once = json.loads(clipline(c, "reconcile", "--once").stdout)
    assert once["batches_reported"] == 1
    view = client.get(f"/v1/batches/{batch_id}").json()
    report = view["report"]
    assert report["jobs"] == 2 and report["counts"] == {"succeeded": 1, "dead": 1}
    assert report["csv"]["key"] == f"cutouts/acme/batches/{batch_id}/report.csv"
    lines = [json.loads(x) for x in httpx.get(report["jsonl"]["url"], timeout=10).text.splitlines()]
    by_key = {r["source_key"]: r for r in lines}
    good, bad = by_key["shoes/red shoe.png"], by_key["shoes/missing.png"]
    assert (good["status"], good["output_key"]) == ("succeeded", "cutouts/acme/shoes/red shoe.png")
    assert len(good["bbox"]) == 4 and 0 < good["foreground_fraction"] < 1
    assert good["uncertainty"] is not None and good["timings_ms"]["infer"] >= 0
    assert (bad["status"], bad["reason"]) == ("dead", "object_missing")
    table = list(csv.DictReader(io.StringIO(httpx.get(report["csv"]["url"], timeout=10).text)))
    assert sorted(r["job_id"] for r in table) == sorted(r["job_id"] for r in lines)
    # The same rows, locally.
    local = tmp_path / "report.csv"
    clipline(c, "status", "--batch", batch_id, "--report", str(local))
    assert local.read_bytes() == c.s3.get(c.output_bucket, report["csv"]["key"])
    # Redrive: the missing source appears, the batch finishes again, the report is rewritten.
    c.s3.put("photos", "shoes/missing.png", square((32, 32), (5, 5, 20, 20), (0, 0, 200)),
             content_type="image/png")
    assert client.post("/v1/dead-letters/redrive", json={"batch_id": batch_id}).json() == {
        "redriven": 1}
    assert client.get(f"/v1/batches/{batch_id}").json()["report"] is None  # due again
    published = json.loads(clipline(c, "reconcile", "--once").stdout)  # sends its message
    assert (published["published"], published["batches_reported"]) == (1, 0)
    settled(c, client, batch_id)
    assert json.loads(clipline(c, "reconcile", "--once").stdout)["batches_reported"] == 1
    again = client.get(f"/v1/batches/{batch_id}").json()["report"]
    assert again["counts"] == {"succeeded": 2} and again["jsonl"]["key"] == report["jsonl"]["key"]
    rewritten = c.s3.get(c.output_bucket, report["jsonl"]["key"]).decode().splitlines()
    assert {json.loads(x)["status"] for x in rewritten} == {"succeeded"}
