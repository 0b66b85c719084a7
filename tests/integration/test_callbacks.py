"""Completion callbacks end to end: API → worker → `clipline reconcile` → a receiver on
loopback that answers 500 the first time. Each finished job gets one accepted, signed call."""

from __future__ import annotations

import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from pipeline.callbacks import HEADER, verify
from tests.distkit import cluster, serve, wait_for
from tests.pictures import square

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Receiver:
    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[int, bytes, str]]] = defaultdict(list)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                job_id = json.loads(body)["id"]
                status = 500 if not receiver.calls[job_id] else 200  # fail the first try
                receiver.calls[job_id].append((status, body, self.headers[HEADER]))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.server.shutdown()
    made.server.server_close()


def test_each_finished_job_gets_one_accepted_signed_call(
    tmp_path: Path, s3_endpoint: str, receiver: Receiver
) -> None:
    with cluster(tmp_path, s3_endpoint, redis_db=7, SEGMENTER="fake",
                 CALLBACKS_ALLOW_HTTP="true", CALLBACKS_ALLOW_NETWORKS="127.0.0.1/32") as c, \
            serve(api_app(c.settings)) as url:
        tenants = TenantStore(c.ledger.engine)
        tenants.save("acme", allowed_sources=["photos/"])
        _, key = tenants.create_key("acme")
        secret = tenants.callback_secret("acme")
        assert secret is not None
        c.put_image("a.png", square((64, 48), (16, 12, 48, 36), (0, 90, 200)))
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers) as api:
            good = api.post("/v1/jobs", json={"source": {"bucket": "photos", "key": "a.png"},
                                              "callback_url": receiver.url}).json()
            gone = api.post("/v1/jobs", json={"source": {"bucket": "photos", "key": "no.png"},
                                              "callback_url": receiver.url}).json()
            plain = api.post("/v1/jobs", json={"source": {"bucket": "photos",
                                                          "key": "b.png"}}).json()
        c.start_worker(concurrency=1)
        c.start_reconciler()
        ids = (good["id"], gone["id"])

        def delivered() -> bool:
            return all(any(s == 200 for s, _, _ in receiver.calls[i]) for i in ids)

        wait_for(delivered, 60, "both callbacks to be accepted", c.logs)
        for job_id in ids:
            calls = receiver.calls[job_id]
            assert [s for s, _, _ in calls] == [500, 200]  # retried once, then accepted
            for _, body, signature in calls:
                assert verify(secret, signature, body)
            row = c.ledger.get(uuid.UUID(job_id))
            assert (row.callback_state, row.callback_attempts) == ("delivered", 2)
        bodies = {i: json.loads(receiver.calls[i][-1][1]) for i in ids}
        assert bodies[good["id"]]["status"] == "succeeded"
        assert bodies[good["id"]]["output"]["key"].endswith(f"{good['id']}.png")
        assert bodies[gone["id"]]["status"] == "dead"
        assert bodies[gone["id"]]["error"] == "object_missing"
        assert plain["id"] not in receiver.calls


def test_plain_http_callbacks_are_refused_by_default(tmp_path: Path, s3_endpoint: str) -> None:
    with cluster(tmp_path, s3_endpoint, redis_db=7) as c, serve(api_app(c.settings)) as url:
        tenants = TenantStore(c.ledger.engine)
        tenants.save("acme", allowed_sources=["photos/"])
        _, key = tenants.create_key("acme")
        answer = httpx.post(f"{url}/v1/jobs", headers={"X-API-Key": key}, json={
            "source": {"bucket": "photos", "key": "a.png"},
            "callback_url": "http://127.0.0.1:9/hook"})
    assert answer.status_code == 422 and answer.json()["code"] == "callback_url_insecure"
