"""Outages cost time, never jobs: every service real (PostgreSQL, Redis, moto's S3, Triton, real
``clipline worker`` and ``clipline reconcile`` processes).

- Triton down for longer than a job's whole retry schedule: nothing is dead-lettered, and every
  job succeeds on its first real attempt once Triton is back (``pipeline/retry.py``, breakers).
- The reconciler never fills the broker with copies of messages that are still waiting, and
  re-sends everything when Redis forgets what it held.
- The database going away while a job finishes: the completion is retried in place, no second
  attempt (the database sits behind a TCP proxy the test cuts; the server is shared).
"""

from __future__ import annotations

import io
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import demo_images
from pipeline.jobs import Dispatch, JobSpec, JobStatus
from tests.distkit import PG_SERVER, Cluster, cluster, wait_for
from tests.modelkit import TEST_MODEL
from tests.netkit import TcpProxy
from tests.tritonkit import TritonServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]
REDIS_DB = 6


def jpeg(size: int = 320) -> bytes:
    out = io.BytesIO()
    demo_images.mug().resize((size, size)).save(out, "JPEG", quality=90)
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def readyz(port: int) -> tuple[int, str]:
    """The worker's readiness: (HTTP status, body)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def failures(c: Cluster, ids: list[uuid.UUID]) -> int:
    return sum(e.action == "failed" for i in ids for e in c.ledger.events(i))


def test_a_triton_outage_longer_than_every_retry_costs_time_not_jobs(
    tmp_path: Path, s3_endpoint: str, triton: TritonServer
) -> None:
    # Without the outage rule two attempts 0.5 s apart would dead-letter every job in a second.
    port = free_port()
    with cluster(tmp_path, s3_endpoint, redis_db=REDIS_DB, SEGMENTER="triton",
                 TRITON_URL=triton.url, MAX_ATTEMPTS="2", OUTAGE_RETRY_MAX_SECONDS="1",
                 WORKER_METRICS_PORT=str(port)) as c:
        ids = []
        for i in range(6):
            c.put_image(f"o{i}.jpg", jpeg())
            spec = JobSpec(bucket="photos", key=f"o{i}.jpg", model=TEST_MODEL)
            ids.append(c.ledger.submit(spec).job.id)
        triton.stop()
        try:
            c.start_reconciler()
            c.start_worker(concurrency=2)
            # Started with Triton down: up, but not ready (why depends on whether a breaker
            # has opened yet; both reasons are spelled out in tests/unit/test_worker_readiness.py).
            assert readyz(port)[0] == 503
            wait_for(lambda: failures(c, ids) >= 6 and "circuit_opened" in c.log_text(), 60,
                     "Triton's outage to open the workers' breakers", c.logs)
            status, why = readyz(port)
            assert (status, why.startswith("not ready: circuit open for inference")) == (503, True)
            time.sleep(8)  # an outage several times the whole retry schedule
            stuck = c.ledger.list_jobs()
            assert not [j for j in stuck if j.status is JobStatus.DEAD], c.logs()
            assert all(j.attempts == 0 for j in stuck if j.status is JobStatus.QUEUED)
            assert "circuit_probe" in c.log_text()  # the breakers held work back, probing
        finally:
            triton.start()
        wait_for(lambda: all(c.ledger.get(i).status is JobStatus.SUCCEEDED for i in ids), 90,
                 "every job to succeed after the outage", c.logs)
        wait_for(lambda: readyz(port) == (200, "ready\n"), 30, "the worker to be ready", c.logs)
        for job_id in ids:
            job = c.ledger.get(job_id)
            assert (job.attempts, job.outage_since) == (1, None)  # outages were given back
            assert [e.error_code for e in c.ledger.events(job_id) if e.action == "failed"] \
                and all(e.error_code == "inference_unavailable"
                        for e in c.ledger.events(job_id) if e.action == "failed")


def test_the_broker_never_holds_more_messages_than_queued_jobs(
    tmp_path: Path, s3_endpoint: str
) -> None:
    # No worker: every message stays waiting, the case where age alone said "lost".
    with cluster(tmp_path, s3_endpoint, redis_db=REDIS_DB, RECONCILE_LOST_AFTER_SECONDS="0.2",
                 RECONCILE_INTERVAL_SECONDS="0.2") as c:
        c.start_reconciler()
        batch = c.ledger.create_batch(label="invariant")
        c.ledger.submit_many(
            [JobSpec(bucket="photos", key=f"i{i}.jpg", model=TEST_MODEL) for i in range(300)],
            batch_id=batch)
        peak = 0

        def sample(seconds: float) -> None:
            nonlocal peak
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                peak = max(peak, c.queue.depth())
                time.sleep(0.05)

        sample(1.5)  # the reconciler sends the 300 (they were never published) ...
        assert c.queue.depth() == 300
        sample(2.0)  # ... and, with them all waiting, sends no copies however old they get
        assert peak == 300
        c.redis.flushdb()  # Redis forgets; the reconciler notices and sends them again
        wait_for(lambda: c.queue.depth() == 300, 20, "every message to be re-sent", c.logs)
        sample(2.0)
        assert peak == 300, c.logs()


@pytest.fixture
def proxied_ledger() -> Iterator[TcpProxy]:
    host_port = PG_SERVER.rsplit("@", 1)[-1]
    host, port = host_port.split(":")
    proxy = TcpProxy((host, int(port)))
    try:
        yield proxy
    finally:
        proxy.close()


def test_the_database_going_away_while_a_job_finishes_costs_no_attempt(
    tmp_path: Path, s3_endpoint: str, triton: TritonServer, proxied_ledger: TcpProxy
) -> None:
    slow = TritonServer(triton.model_file, delay_ms=3000)  # a window while the job runs
    slow.start()
    try:
        with cluster(tmp_path, s3_endpoint, redis_db=REDIS_DB, SEGMENTER="triton",
                     TRITON_URL=slow.url, LEASE_SECONDS="60", HEARTBEAT_SECONDS="1") as c:
            # Only the worker reaches the database through the proxy.
            direct = c.values["DATABASE_URL"]
            c.values["DATABASE_URL"] = direct.replace(
                PG_SERVER.rsplit("@", 1)[-1], f"127.0.0.1:{proxied_ledger.port}")
            c.start_worker(concurrency=1)
            c.values["DATABASE_URL"] = direct
            c.put_image("db.jpg", jpeg())
            job = c.ledger.submit(JobSpec(bucket="photos", key="db.jpg", model=TEST_MODEL)).job
            c.queue.publish([Dispatch(job.id)])
            wait_for(lambda: c.ledger.get(job.id).status is JobStatus.RUNNING, 30,
                     "the job to be claimed", c.logs)
            proxied_ledger.cut()  # the database goes away while Triton works
            restore = threading.Timer(6.0, proxied_ledger.restore)
            restore.start()
            wait_for(lambda: c.ledger.get(job.id).status is JobStatus.SUCCEEDED, 60,
                     "the job to succeed once the database is back", c.logs)
            restore.join()
            done = c.ledger.get(job.id)
            assert done.attempts == 1
            assert [e.action for e in c.ledger.events(job.id)] == ["claimed", "completed"]
            assert "ledger_write_retried" in c.log_text()
            assert len(c.output_keys(job.id)) == 1
    finally:
        slow.stop()
