"""Every path of a batch ends ``ready`` or ``failed`` (``pipeline.batches`` draws them): the API
over HTTP with PostgreSQL, Redis and moto's S3, and ``clipline reconcile`` for a batch whose API
process stopped. Nothing is left ``expanding`` or ``publishing``."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from clipline.cli.api import api_app
from pipeline.adapters.ledger.schema import batches
from pipeline.adapters.ledger.tenants import TenantStore
from pipeline.api.app import create_app
from pipeline.api.deps import ApiDeps
from pipeline.batches import FINAL, settle_stale
from pipeline.jobs import JobSpec
from tests.distkit import Cluster, cluster, serve, wait_for
from tests.modelkit import TEST_MODEL

pytestmark = [pytest.mark.postgres]
CLIPLINE = str(Path(sys.executable).with_name("clipline"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory,
          s3_endpoint: str) -> Iterator[tuple[Cluster, httpx.Client]]:
    with cluster(tmp_path_factory.mktemp("batches"), s3_endpoint, redis_db=9,
                 API_MAX_MANIFEST_BYTES="2000") as c, serve(api_app(c.settings)) as url:
        tenants = TenantStore(c.ledger.engine)
        tenants.save("acme", allowed_sources=["photos/", "no-such-bucket/"])
        _, key = tenants.create_key("acme")
        c.s3.client.create_bucket(Bucket="elsewhere")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                          timeout=30) as client:
            yield c, client


def final_state(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    made = client.post("/v1/batches", json=body)
    assert made.status_code == 202, made.text
    url = f"/v1/batches/{made.json()['id']}"
    wait_for(lambda: client.get(url).json()["state"] in FINAL, 30, "the batch to settle")
    found: dict[str, Any] = client.get(url).json()
    return found


def put(c: Cluster, key: str, data: bytes, bucket: str = "photos") -> dict[str, str]:
    c.s3.client.put_object(Bucket=bucket, Key=key, Body=data)
    return {"bucket": bucket, "key": key}


@pytest.mark.parametrize(("name", "body", "state", "reason"), [
    ("inline items", {"items": [{"bucket": "photos", "key": "in/a.jpg"}]}, "ready", None),
    ("manifest", "s3://photos/m/a.jpg\ns3://photos/m/b.jpg\n", "ready", None),
    ("prefix", {"prefix": "s3://photos/p/"}, "ready", None),
    ("empty prefix", {"prefix": "s3://photos/nothing-here/"}, "ready", None),
    ("bad manifest line", "s3://photos/ok.jpg\nnot a url\n", "failed", "invalid_manifest"),
    ("manifest line outside the allowlist", "s3://elsewhere/a.jpg\n", "failed",
     "source_not_allowed"),
    ("manifest missing", {"manifest": {"bucket": "photos", "key": "no/such/manifest.txt"}},
     "failed", "object_missing"),
    ("manifest over the size limit", "s3://photos/big.jpg\n" * 200, "failed",
     "invalid_manifest"),
    ("prefix of a missing bucket", {"prefix": "s3://no-such-bucket/x/"}, "failed",
     "object_missing"),
])
def test_every_path_of_an_api_batch_ends_ready_or_failed(
        stack: Any, name: str, body: Any, state: str, reason: str | None) -> None:
    c, client = stack
    if isinstance(body, str):
        body = {"manifest": put(c, f"manifests/{name.replace(' ', '-')}.txt", body.encode())}
    if name == "prefix":
        put(c, "p/one.jpg", b"x")
        put(c, "p/two.png", b"x")
    found = final_state(client, body)
    assert found["state"] == state, found
    assert (found["expansion"] or {}).get("reason") == reason, found


def test_an_unforeseen_failure_ends_the_batch_failed(stack: Any) -> None:
    """A store that raises what no adapter translates (a bug): the batch still ends."""
    c, _ = stack

    class Broken:
        def get(self, bucket: str, key: str, *, version: str | None = None) -> bytes:
            raise RuntimeError("a bug nobody foresaw")

    app = create_app(ApiDeps(settings=c.settings, ledger=c.ledger, tenants=TenantStore(
        c.ledger.engine), queue=c.queue, store=Broken()))  # type: ignore[arg-type]
    _, key = TenantStore(c.ledger.engine).create_key("acme")
    with serve_without_closing(app) as url, httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
        found = final_state(client, {"manifest": {"bucket": "photos", "key": "any.txt"}})
    assert found["state"] == "failed" and found["expansion"]["reason"] == "internal_error"


def test_a_broker_that_is_down_still_ends_the_batch_ready(tmp_path: Path,
                                                          s3_endpoint: str) -> None:
    with cluster(tmp_path, s3_endpoint, redis_db=9,
                 REDIS_URL="redis://127.0.0.1:1/0") as c, serve(api_app(c.settings)) as url:
        TenantStore(c.ledger.engine).save("acme", allowed_sources=["photos/"])
        _, key = TenantStore(c.ledger.engine).create_key("acme")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                          timeout=30) as client:
            found = final_state(client, {"items": [{"bucket": "photos", "key": "a.jpg"}]})
    assert found["state"] == "ready" and found["counts"]["queued"] == 1


@pytest.mark.parametrize(("state", "jobs", "settled", "reason"), [
    ("expanding", 0, "failed", "expansion_lost"),
    ("expanding", 2, "ready", None),
    ("publishing", 2, "ready", None),
])
def test_the_reconciler_settles_a_batch_whose_api_process_stopped(
        stack: Any, state: str, jobs: int, settled: str, reason: str | None) -> None:
    c, client = stack
    old = c.ledger.clock.now() - timedelta(hours=2)
    batch = c.ledger.create_batch("acme", meta={"state": state})
    with c.ledger.engine.begin() as conn:
        conn.execute(update(batches).where(batches.c.id == batch).values(created_at=old))
    if jobs:
        c.ledger.submit_many((JobSpec("photos", f"stopped/{state}/{n}.jpg", model=TEST_MODEL)
                              for n in range(jobs)), tenant="acme", batch_id=batch)
    fresh = c.ledger.create_batch("acme", meta={"state": "expanding"})  # still in its hour
    done = subprocess.run([CLIPLINE, "reconcile", "--once"], capture_output=True, text=True,
                          env={**c.env, "CLIPLINE_BATCH_SETTLE_AFTER_SECONDS": "3600"},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    found = client.get(f"/v1/batches/{batch}").json()
    assert found["state"] == settled and (found["expansion"] or {}).get("reason") == reason
    assert client.get(f"/v1/batches/{fresh}").json()["state"] == "expanding"
    c.ledger.set_batch_meta(fresh, {"state": "ready"})


def serve_without_closing(app: Any) -> Any:
    """``serve`` closes the app's ledger at the end; this app shares the cluster's."""
    app.state.deps.ledger = _Unclosed(app.state.deps.ledger)
    return serve(app)


class _Unclosed:
    def __init__(self, ledger: Any) -> None:
        self._ledger = ledger

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def close(self) -> None:
        pass



def test_settling_never_overwrites_a_state_the_api_wrote_meanwhile(stack: Any) -> None:
    c, client = stack
    batch = c.ledger.create_batch("acme", meta={"state": "expanding"})
    later = c.ledger.clock.now() + timedelta(hours=1)
    [stale] = [b for b in c.ledger.unsettled_batches(later) if b.id == batch]
    c.ledger.set_batch_meta(batch, {"state": "failed", "reason": "invalid_manifest",
                                    "message": "line 7: ..."})  # the API, just in time
    assert settle_stale(_Only(c.ledger, [stale]), later, 0) == 0
    found = client.get(f"/v1/batches/{batch}").json()
    assert (found["state"], found["expansion"]["message"]) == ("failed", "line 7: ...")


@pytest.mark.parametrize("body", [
    {"manifest": {"bucket": "elsewhere", "key": "manifest.txt"}},
    {"prefix": "s3://elsewhere/"},
    {"prefix": "s3://photos-private/x/"},
])
def test_a_batch_source_outside_the_allowlist_is_refused_before_anything_is_read(
        stack: Any, body: dict[str, Any]) -> None:
    _, client = stack
    before = client.get("/v1/jobs").json()
    refused = client.post("/v1/batches", json=body)
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "source_not_allowed"
    assert client.get("/v1/jobs").json() == before


class _Only:
    """The ledger, with ``unsettled_batches`` answering what it answered a moment ago."""

    def __init__(self, ledger: Any, found: list[Any]) -> None:
        self.ledger, self.found = ledger, found

    def unsettled_batches(self, created_before: Any) -> list[Any]:
        return self.found

    def settle_batch(self, batch_id: Any, meta: Any) -> bool:
        return bool(self.ledger.settle_batch(batch_id, meta))
