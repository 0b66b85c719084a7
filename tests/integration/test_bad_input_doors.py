"""Text the ledger cannot hold, through every door: a typed refusal naming the field, never a 5xx,
never a traceback, never a batch left half-done. Real PostgreSQL (which refuses NUL in text and
JSON), Redis, moto's S3, the API over HTTP and the ``clipline`` command as a subprocess.

The hostile values (``HOSTILE``) are the kinds ``pipeline.fields`` refuses: NUL, other C0 and C1
control characters, DEL, an unpaired surrogate (where the transport can carry one), and text
over the column's length.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from tests.distkit import Cluster, cluster, serve, wait_for

pytestmark = [pytest.mark.postgres]
CLIPLINE = str(Path(sys.executable).with_name("clipline"))
SECRET = "webhook-secret-for-door-tests"
RULES = '[[rule]]\nbucket = "photos"\ntenant = "acme"\n'
HOSTILE = {
    "nul": "a\x00b.jpg", "bell": "a\x07.jpg", "newline": "a\nb.jpg", "del": "a\x7f.jpg",
    "c1": "a\x85.jpg", "surrogate": "a\ud800.jpg",
}


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory,
         s3_endpoint: str) -> Iterator[tuple[Cluster, httpx.Client]]:
    work = tmp_path_factory.mktemp("doors")
    (work / "rules.toml").write_text(RULES)
    with cluster(work, s3_endpoint, redis_db=1, EVENTS_RULES_FILE=str(work / "rules.toml"),
                 EVENTS_WEBHOOK_SECRET=SECRET, API_RATE_PER_SECOND="100000",
                 API_RATE_BURST="100000") as c, serve(api_app(c.settings)) as url:
        tenants = TenantStore(c.ledger.engine)
        tenants.save("acme", allowed_sources=["photos/"])
        _, key = tenants.create_key("acme")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                          timeout=30) as client:
            yield c, client


def send(client: httpx.Client, method: str, path: str, body: Any = None,
         **kwargs: Any) -> httpx.Response:
    """The request with ``body`` as JSON written by hand: ``json.dumps`` escapes a surrogate as
    ``\\ud800``, exactly what a client may send."""
    content = None if body is None else json.dumps(body)
    headers = {"Content-Type": "application/json"} if content else {}
    response = client.request(method, path, content=content,
                              headers={**headers, **kwargs.pop("headers", {})}, **kwargs)
    assert response.status_code < 500, response.text
    return response


def refused(response: httpx.Response, field: str) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert field in problem["detail"], problem
    return problem


@pytest.mark.parametrize("kind", HOSTILE)
@pytest.mark.parametrize("field", ["key", "version"])
def test_a_job_source_the_ledger_cannot_hold_is_refused(door: Any, kind: str, field: str) -> None:
    _, client = door
    source = {"bucket": "photos", "key": "ok.jpg", field: HOSTILE[kind]}
    refused(send(client, "POST", "/v1/jobs", {"source": source}), f"source.{field}")


@pytest.mark.parametrize(("body", "field"), [
    ({"source": {"bucket": "Photos_Bucket", "key": "a.jpg"}}, "source.bucket"),
    ({"source": {"bucket": "photos", "key": "é" * 513}}, "source.key"),  # 1,026 bytes
    ({"source": {"bucket": "photos", "key": "a.jpg", "version": "v" * 1025}}, "source.version"),
    ({"source": {"bucket": "photos", "key": "a.jpg"}, "options": {"\x00": True}}, "option"),
    ({"source": {"bucket": "photos", "key": "a.jpg"}, "options": {"bg_color": "\x00"}},
     "bg_color"),
    ({"source": {"bucket": "photos", "key": "a.jpg"}, "options": {"max_side": "²"}},
     "max_side"),
    ({"source": {"bucket": "photos", "key": "a.jpg"}, "priority": 40000}, "priority"),
])
def test_other_job_fields_over_their_limits_are_refused(door: Any, body: dict[str, Any],
                                                        field: str) -> None:
    _, client = door
    refused(send(client, "POST", "/v1/jobs", body), field)


@pytest.mark.parametrize("value", ["k\x01ey", "k" * 256])
def test_an_idempotency_key_the_ledger_cannot_hold_is_refused(door: Any, value: str) -> None:
    _, client = door
    body = {"source": {"bucket": "photos", "key": "ok.jpg"}}
    refused(send(client, "POST", "/v1/jobs", body, headers={"Idempotency-Key": value}),
            "idempotency-key")


def test_an_idempotency_key_at_the_column_s_length_is_kept(door: Any) -> None:
    _, client = door
    body = {"source": {"bucket": "photos", "key": "long-key.jpg"}}
    made = send(client, "POST", "/v1/jobs", body, headers={"Idempotency-Key": "k" * 255})
    assert made.status_code == 202, made.text


@pytest.mark.parametrize(("path", "params"), [
    ("/v1/jobs", {"reason": "a\x00"}), ("/v1/dead-letters", {"reason": "\x00"}),
    ("/v1/jobs", {"reason": "r" * 65}),
])
def test_a_query_the_ledger_cannot_hold_is_refused(door: Any, path: str,
                                                   params: dict[str, str]) -> None:
    _, client = door
    refused(send(client, "GET", path, params=params), "reason")


@pytest.mark.parametrize(("body", "field"), [
    ({"label": "night\x00", "items": []}, "label"),
    ({"items": [{"bucket": "photos", "key": "a\x00.jpg"}]}, "items.0.key"),
    ({"items": [{"bucket": "photos", "key": "a.jpg", "version": "\x1b[31m"}]},
     "items.0.version"),
    ({"items": [{"bucket": "photos", "key": "a.jpg", "priority": 40000}]}, "items.0.priority"),
    ({"prefix": "s3://photos/in\x00/"}, "prefix"),
    ({"manifest": {"bucket": "photos", "key": "m\x00.txt"}}, "manifest.key"),
    ({"reason": "\x00"}, "reason"),
])
def test_batch_and_redrive_fields_the_ledger_cannot_hold_are_refused(
        door: Any, body: dict[str, Any], field: str) -> None:
    _, client = door
    path = "/v1/dead-letters/redrive" if "reason" in body else "/v1/batches"
    refused(send(client, "POST", path, body), field)


MANIFESTS = {
    "url line with NUL": ("m.txt", b"s3://photos/ok.jpg\ns3://photos/a\x00.jpg\n", "line 2"),
    "JSON line with NUL": ("m.txt", b'{"bucket": "photos", "key": "ok.jpg"}\n'
                           b'{"bucket": "photos", "key": "a\\u0000.jpg"}\n', "line 2"),
    "CSV cell with NUL": ("m.csv", b"bucket,key\nphotos,ok.jpg\nphotos,a\x00.jpg\n", "line 3"),
    "not UTF-8": ("m.txt", b"s3://photos/ok.jpg\ns3://photos/caf\xe9.jpg\n", "line 2"),
    "priority over SMALLINT": ("m.txt", b'{"bucket": "photos", "key": "a.jpg", '
                               b'"priority": 40000}\n', "line 1"),
    "idempotency key over VARCHAR(255)": (
        "m.txt", b'{"bucket": "photos", "key": "a.jpg", "idempotency_key": "' + b"k" * 300
        + b'"}\n', "line 1"),
    "model over VARCHAR(64)": ("m.txt", b'{"bucket": "photos", "key": "a.jpg", "model": "'
                               + b"m" * 80 + b'"}\n', "line 1"),
    "version as an object": ("m.txt", b'{"bucket": "photos", "key": "a.jpg", '
                             b'"version": {"v": 1}}\n', "line 1"),
    "nested too deep": ("m.txt", b"[" * 50_000 + b"]" * 50_000 + b"\n", "line 1"),
}


@pytest.mark.parametrize("case", MANIFESTS)
def test_a_manifest_the_ledger_cannot_hold_ends_its_batch_failed_naming_the_line(
        door: Any, case: str) -> None:
    c, client = door
    name, data, line = MANIFESTS[case]
    key = f"manifests/{list(MANIFESTS).index(case)}/{name}"
    c.s3.client.put_object(Bucket="photos", Key=key, Body=data)
    made = send(client, "POST", "/v1/batches", {"manifest": {"bucket": "photos", "key": key}})
    assert made.status_code == 202, made.text
    batch = made.json()["id"]

    def view() -> dict[str, Any]:
        found: dict[str, Any] = send(client, "GET", f"/v1/batches/{batch}").json()
        return found

    wait_for(lambda: view()["state"] != "expanding", 30, "the batch to leave expanding")
    found = view()
    assert found["state"] == "failed", found
    assert found["expansion"]["reason"] == "invalid_manifest", found
    assert found["expansion"]["message"].startswith(line), found
    assert sum(found["counts"].values()) == 0  # nothing half-submitted


def test_a_manifest_with_a_bom_and_crlf_lines_is_read(door: Any) -> None:
    c, client = door
    c.s3.client.put_object(Bucket="photos", Key="manifests/bom.csv",
                           Body="\ufeffbucket,key\r\nphotos,bom/a.jpg\r\nphotos,bom/b c.jpg\r\n"
                           .encode())
    made = send(client, "POST", "/v1/batches",
                {"manifest": {"bucket": "photos", "key": "manifests/bom.csv"}})
    batch = made.json()["id"]
    wait_for(lambda: send(client, "GET", f"/v1/batches/{batch}").json()["state"] == "ready",
             30, "the batch to be ready")
    keys = sorted(j["source"]["key"] for j in
                  send(client, "GET", "/v1/jobs", params={"batch": batch}).json()["items"])
    assert keys == ["bom/a.jpg", "bom/b c.jpg"]


def test_a_webhook_event_with_a_key_the_ledger_cannot_hold_is_skipped(door: Any) -> None:
    records = [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": "photos"},
        "object": {"key": key, "size": 1, "eTag": "e1", "sequencer": "01"}}}
        for key in ("hooks/a%00.jpg", "hooks/ok.jpg")]
    response = httpx.post(f"{client_url(door)}/v1/events/webhook",
                          content=json.dumps({"Records": records}),
                          headers={"Authorization": f"Bearer {SECRET}"}, timeout=30)
    assert response.status_code == 200, response.text
    assert (response.json()["created"], response.json()["skipped"]) == (1, 1)


def test_a_webhook_body_nested_too_deep_is_refused(door: Any) -> None:
    response = httpx.post(f"{client_url(door)}/v1/events/webhook",
                          content=b"[" * 50_000 + b"]" * 50_000,
                          headers={"Authorization": f"Bearer {SECRET}"}, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_event"


def client_url(door: Any) -> str:
    return str(door[1].base_url).rstrip("/")


# -- the CLI: one line on stderr, exit 2, nothing recorded --------------------------------------


def clipline(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLIPLINE, *args], env={**os.environ, **c.env},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "field"), [
    (["submit", "s3://photos/a\x07.jpg"], "key"),
    (["submit", "s3://Photos_Bucket/a.jpg"], "bucket"),
    (["submit", "s3://photos/a.jpg", "--priority", "40000"], "priority"),
    (["submit", "s3://photos/a.jpg", "--label", "night\x1b[2J"], "label"),
    (["submit", "--prefix", "s3://photos/in\x01/"], "prefix"),
    (["tenants", "create", "acme\n"], "tenant"),
    (["tenants", "create", "globex", "--name", "Globex\x7f"], "name"),
    (["tenants", "create", "globex", "--allow", "photos/\x1b"], "allow"),
    (["tenants", "key", "acme", "--label", "lap\x08top"], "label"),
])
def test_the_cli_refuses_text_the_ledger_cannot_hold_in_one_line(
        door: Any, args: list[str], field: str) -> None:
    c, _ = door
    done = clipline(c, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("clipline: "), done.stderr
    assert field in done.stderr and "Traceback" not in done.stderr


def test_the_cli_refuses_a_manifest_line_by_its_number(door: Any, tmp_path: Path) -> None:
    c, _ = door
    manifest = tmp_path / "tonight.txt"
    manifest.write_bytes(b"s3://photos/ok.jpg\ns3://photos/caf\xe9.jpg\n")
    done = clipline(c, "submit", "--manifest", str(manifest))
    assert done.returncode == 2, done.stderr
    assert "line 2: not UTF-8" in done.stderr and done.stderr.count("\n") == 1
