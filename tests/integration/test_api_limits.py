"""Limits before work, over real HTTP (uvicorn on loopback) with PostgreSQL, Redis and moto's
S3 + SQS: a key before the body, a body counted while it streams, JSON depth at every door
(the API, the webhook, ``clipline events``), and an event loop that no blocked query stalls.

Redis database 0 is this module's (``tests/bench/test_smoke.py`` checks that no module shares).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from clipline.cli.api import api_app
from pipeline.adapters.ledger.tenants import TenantStore
from tests.distkit import Cluster, cluster, serve, wait_for
from tests.integration.test_events import log_events, sqs_client

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]
SECRET = "webhook-secret-for-limit-tests"
LIMIT = 1024 * 1024
MIB = 1024 * 1024
DEEP = b"[" * 50_000 + b"]" * 50_000  # 100 KB, 50,000 levels: the tracker's document


def event(key: str, bucket: str = "photos") -> dict[str, Any]:
    return {"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": bucket}, "object": {"key": key, "eTag": "e1", "sequencer": "01"}}}]}


@dataclass
class Api:
    c: Cluster
    url: str
    key: str

    def post(self, path: str, content: bytes, **headers: str) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", content=content, timeout=30, headers={
            "Authorization": f"Bearer {self.key}", "Content-Type": "application/json",
            **headers})

    def hook(self, content: bytes) -> httpx.Response:
        return self.post("/v1/events/webhook", content, Authorization=f"Bearer {SECRET}")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str) -> Iterator[Api]:
    work = tmp_path_factory.mktemp("limits")
    (work / "rules.toml").write_text('[[rule]]\nbucket = "photos"\ntenant = "acme"\n')
    with cluster(work, s3_endpoint, redis_db=0, SEGMENTER="fake",
                 API_MAX_BODY_BYTES=str(LIMIT), EVENTS_RULES_FILE=str(work / "rules.toml"),
                 EVENTS_WEBHOOK_SECRET=SECRET, SQS_ENDPOINT_URL=s3_endpoint,
                 EVENTS_MAX_RECEIVES="3") as c, serve(api_app(c.settings)) as url:
        tenants = TenantStore(c.ledger.engine)
        tenants.save("acme", allowed_sources=["photos/"])
        _, key = tenants.create_key("acme")
        yield Api(c, url, key)


# -- a body is not read before the key, nor past the limit ------------------------------------


def rss() -> int:
    """This process's resident memory in bytes (uvicorn serves from a thread of it)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Upload:
    status: int
    code: str
    sent_before_answer: int  # body bytes written before the answer arrived
    seconds_to_answer: float
    rss_growth: int  # the most this process grew while the whole body went through


class PeakMemory:
    """The most this process's resident memory grows while the block runs (sampled)."""

    def __enter__(self) -> PeakMemory:
        self.baseline, self.peak, self._done = rss(), rss(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, rss())
            time.sleep(0.005)

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def heard(sock: socket.socket, answer: bytearray, wait: float) -> bool:
    """Whether the answer's head has arrived, reading for up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while b"\r\n\r\n" not in answer:
        ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return False
        answer.extend(sock.recv(65536))
    return True


def chunked_upload(url: str, path: str, total: int, headers: dict[str, str],
                   first_wait: float = 5.0, wait: float = 0.05) -> Upload:
    """POST ``total`` bytes as a chunked body over a raw socket, a MiB at a time, waiting for
    an answer after each (``first_wait`` seconds after the first, ``wait`` after the others)
    until one comes. Every byte is sent whatever the answer: the memory is measured over the
    whole body."""
    host, port = url.removeprefix("http://").split(":")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    chunk = b"%x\r\n" % MIB + b"\0" * MIB + b"\r\n"
    answer = bytearray()
    sent, at_answer, elapsed = 0, -1, 0.0
    with PeakMemory() as memory, socket.create_connection((host, int(port))) as sock:
        started = time.monotonic()
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                     f"Content-Type: application/json\r\n{head}\r\n".encode())
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += MIB
                if at_answer < 0 and heard(sock, answer, first_wait if sent == MIB else wait):
                    at_answer, elapsed = sent, time.monotonic() - started
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # a server may close once it has answered
        assert heard(sock, answer, 30), "no answer"
        if at_answer < 0:
            at_answer, elapsed = sent, time.monotonic() - started
        end = answer.index(b"\r\n\r\n") + 4
        while len(answer) < end + _length(answer):
            answer.extend(sock.recv(65536))
    status = int(bytes(answer).split(b" ", 2)[1])
    problem = json.loads(bytes(answer[end:end + _length(answer)]))
    return Upload(status, problem["code"], at_answer, elapsed, memory.growth)


def _length(answer: bytearray) -> int:
    for line in bytes(answer).split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise AssertionError(f"no Content-Length in {bytes(answer)[:300]!r}")


def test_a_250_mib_chunked_post_without_a_key_gets_401_before_its_body_in_flat_memory(
        api: Api) -> None:
    upload = chunked_upload(api.url, "/v1/jobs", 250 * MIB, {})
    print(f"\nno key, 250 MiB chunked: {upload}")
    assert (upload.status, upload.code) == (401, "unauthorized")
    assert upload.sent_before_answer == MIB  # answered with the body still to come
    assert upload.rss_growth < 64 * MIB  # the 250 MiB went by, unbuffered
    assert api.c.ledger.list_jobs() == []


def test_a_chunked_body_over_the_limit_gets_413_while_it_is_still_being_sent(
        api: Api) -> None:
    upload = chunked_upload(api.url, "/v1/batches", 64 * MIB,
                            {"Authorization": f"Bearer {api.key}"}, first_wait=0.5)
    print(f"\nkeyed, 64 MiB chunked, limit 1 MiB: {upload}")
    assert (upload.status, upload.code) == (413, "body_too_large")
    assert upload.sent_before_answer <= 4 * MIB  # the limit is passed in the second MiB
    assert upload.rss_growth < 32 * MIB


# -- JSON nested too deep, at every door ------------------------------------------------------


def test_json_nested_too_deep_is_refused_by_the_api_and_the_webhook(api: Api) -> None:
    for path in ("/v1/jobs", "/v1/batches"):
        refused = api.post(path, b'{"source": ' + DEEP + b"}")
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["code"] == "invalid_request"
        assert refused.json()["errors"][0]["loc"] == ["body"]
    hooked = api.hook(DEEP)
    assert hooked.status_code == 422 and hooked.json()["code"] == "invalid_event", hooked.text
    assert "nested too deep" in hooked.json()["detail"]
    assert api.c.ledger.list_jobs() == []
    fine = api.hook(json.dumps(event("shallow.png")).encode())
    assert fine.status_code == 200 and fine.json()["created"] == 1, fine.text


def test_clipline_events_counts_a_deep_message_drops_it_at_max_receives_and_goes_on(
        api: Api, s3_endpoint: str) -> None:
    c, sqs = api.c, sqs_client(s3_endpoint)
    url = sqs.create_queue(QueueName=f"limits-{uuid.uuid4().hex[:8]}",
                           Attributes={"VisibilityTimeout": "1"})["QueueUrl"]  # no redrive
    c.values["SQS_QUEUE_URL"] = url
    sqs.send_message(QueueUrl=url, MessageBody=DEEP.decode())
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event("after-the-deep-one.png")))
    proc = c.start("events", "--wait", "1", ready="events_started")
    log = c.processes[-1][1]
    wait_for(lambda: bool(log_events(log, "event_dropped")), 60, "the deep message dropped",
             c.logs)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, c.logs()
    seen = log_events(log, "event_unparseable")
    assert [e["receive_count"] for e in seen] == [1, 2, 3]  # every receive survived
    assert {e["reason"] for e in seen} == {"invalid_event"}
    assert all("nested too deep" in e["error"] for e in seen)
    assert "after-the-deep-one.png" in {j.key for j in c.ledger.list_jobs(tenant="acme")}
    assert "RecursionError" not in log.read_text()


# -- nothing blocks the event loop ------------------------------------------------------------


def waiting_on_a_lock(api: Api) -> int:
    with api.c.ledger.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")).scalar_one())


def timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    answer = call()
    return time.perf_counter() - started, answer


def test_healthz_answers_within_100_ms_while_requests_wait_on_a_table_lock(api: Api) -> None:
    """A plain ``CREATE INDEX`` holds such a lock; the webhook and POST /v1/jobs wait on it in
    worker threads, and the event loop goes on answering."""
    health = httpx.Client(base_url=api.url, timeout=2)
    assert health.get("/healthz").status_code == 200  # connected: the timing is the answer's
    with api.c.ledger.engine.connect() as locker, ThreadPoolExecutor(2) as pool:
        locker.execute(text("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE"))
        try:
            posted: Future[httpx.Response] = pool.submit(
                api.post, "/v1/jobs",
                json.dumps({"source": {"bucket": "photos", "key": "locked.png"}}).encode())
            wait_for(lambda: waiting_on_a_lock(api) == 1, 10, "the POST to wait on the lock")
            hooked: Future[httpx.Response] = pool.submit(
                api.hook, json.dumps(event("during-the-lock.png")).encode())
            wait_for(lambda: waiting_on_a_lock(api) == 2, 10, "the webhook to wait on it too")
            times = []
            for _ in range(5):
                seconds, answer = timed(lambda: health.get("/healthz"))
                assert answer.status_code == 200
                times.append(seconds)
            print(f"\n/healthz while two requests wait on the lock: "
                  f"{', '.join(f'{t * 1000:.1f} ms' for t in times)}")
            assert not hooked.done() and not posted.done()  # still waiting: the lock held
            assert max(times) < 0.1
        finally:
            locker.rollback()
        assert hooked.result(timeout=30).json()["created"] == 1
        assert posted.result(timeout=30).status_code == 202
    health.close()
