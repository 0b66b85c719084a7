"""The distributed path end to end, every service real.

PostgreSQL (a database per test), Redis (its own database number), moto's S3 server, a Triton
server from the nvidia-pytriton wheel serving the real u2netp, and real ``clipline worker`` and
``clipline reconcile`` processes configured through the environment. Clocks are short (a 4 s
lease, 3 s before a message counts as lost) so that recoveries take seconds.
"""

from __future__ import annotations

import io
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import demo_images
from pipeline.jobs import Dispatch, JobSpec, JobStatus
from tests.distkit import CLIPLINE, Cluster, cluster, wait_for
from tests.modelkit import TEST_MODEL
from tests.tritonkit import TritonServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]


def jpeg(draw: str = "mug", size: int = 480) -> bytes:
    img = getattr(demo_images, draw)().resize((size, size))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture
def dist(tmp_path: Path, s3_endpoint: str, triton: TritonServer) -> Iterator[Cluster]:
    with cluster(tmp_path, s3_endpoint, SEGMENTER="triton", TRITON_URL=triton.url) as made:
        yield made


def submit(c: Cluster, *lines: str, tmp: Path) -> uuid.UUID:
    manifest = tmp / f"manifest-{uuid.uuid4().hex[:6]}.txt"
    manifest.write_text("\n".join(lines) + "\n")
    done = subprocess.run([CLIPLINE, "submit", "--manifest", str(manifest)], env=c.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return uuid.UUID(done.stdout.split()[1].rstrip(":"))


def events(c: Cluster, job_id: uuid.UUID) -> list[str]:
    return [e.action for e in c.ledger.events(job_id)]


def test_a_batch_in_s3_becomes_cut_outs_in_s3(dist: Cluster, tmp_path: Path) -> None:
    urls = [dist.put_image(f"shop/{name}.jpg", jpeg(name))
            for name in ("mug", "bottle", "sneaker", "ball")]
    dist.start_worker()
    batch = submit(dist, *urls, '{"bucket": "photos", "key": "shop/mug.jpg", '
                   '"options": {"format": "webp", "crop": true}}', tmp=tmp_path)
    counts = dist.wait_batch(batch)
    assert counts[JobStatus.SUCCEEDED] == 5, dist.logs()
    for job in dist.ledger.list_jobs(batch_id=batch):
        assert job.result is not None and job.attempts == 1
        out = job.result["output"]
        ext = ".webp" if job.options["format"] == "webp" else ".png"
        assert out["key"] == f"cutouts/default/{job.id}{ext}"
        head = dist.s3.head(out["bucket"], out["key"])
        assert head["content_type"] == job.result["content_type"]
        assert head["metadata"]["job-id"] == str(job.id)
        assert head["metadata"]["model"] == "u2netp"
        assert len(head["metadata"]["options-hash"]) == 16
        cut = Image.open(io.BytesIO(dist.s3.get(out["bucket"], out["key"])))
        alpha = np.asarray(cut.convert("RGBA"))[..., 3]
        # the product is kept, the studio background is cleared
        assert (alpha > 200).mean() > 0.05 and (alpha < 30).mean() > 0.2
    # re-submitting the same manifest lines creates nothing new
    again = submit(dist, *urls, tmp=tmp_path)
    assert dist.ledger.batch_counts(again).total == 0


def test_missing_and_corrupt_objects_are_dead_without_retries(
    dist: Cluster, tmp_path: Path
) -> None:
    corrupt = dist.put_image("broken.jpg", jpeg()[:700])
    text = dist.put_image("notes.jpg", b"these are not pixels\n" * 10)
    dist.start_worker()
    batch = submit(dist, "s3://photos/nope.jpg", corrupt, text, tmp=tmp_path)
    counts = dist.wait_batch(batch)
    assert counts[JobStatus.DEAD] == 3
    reasons = {j.key: j.last_error_code for j in dist.ledger.list_jobs(batch_id=batch)}
    assert reasons == {"nope.jpg": "object_missing", "broken.jpg": "corrupt_image",
                       "notes.jpg": "not_an_image"}
    for job in dist.ledger.list_jobs(batch_id=batch):
        assert job.attempts == 1
        assert events(dist, job.id) == ["claimed", "failed"]


def test_triton_down_then_up_jobs_retry_with_backoff_then_succeed(
    dist: Cluster, triton: TritonServer, tmp_path: Path
) -> None:
    urls = [dist.put_image(f"t{i}.jpg", jpeg(size=320)) for i in range(3)]
    dist.start_worker()
    dist.start_reconciler()
    triton.stop()
    try:
        batch = submit(dist, *urls, tmp=tmp_path)

        def retried() -> bool:  # an outage spends no attempts: count the failures instead
            jobs = dist.ledger.list_jobs(batch_id=batch)
            return all(j.last_error_code == "inference_unavailable"
                       and [e.action for e in dist.ledger.events(j.id)].count("failed") >= 1
                       for j in jobs) and sum(
                [e.action for e in dist.ledger.events(j.id)].count("failed") for j in jobs) >= 4

        wait_for(retried, 60, "every job to fail on Triton, and some again", dist.logs)
    finally:
        triton.start()
    counts = dist.wait_batch(batch)
    assert counts[JobStatus.SUCCEEDED] == 3, dist.logs()
    for job in dist.ledger.list_jobs(batch_id=batch):
        history = events(dist, job.id)
        assert history[:2] == ["claimed", "failed"] and history[-1] == "completed"
        assert job.last_error_code is None
        assert job.attempts == 1  # the outage's failures gave their attempts back
        failures = [e for e in dist.ledger.events(job.id) if e.action == "failed"]
        assert all(e.error_code == "inference_unavailable" for e in failures)


@pytest.fixture
def slow_triton(triton: TritonServer) -> Iterator[TritonServer]:
    """A second Triton whose every batch takes 3 s more: a window to kill a worker in."""
    server = TritonServer(triton.model_file, delay_ms=3000)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_worker_killed_mid_task_the_job_still_finishes_once(
    tmp_path: Path, s3_endpoint: str, slow_triton: TritonServer
) -> None:
    with cluster(tmp_path, s3_endpoint, SEGMENTER="triton", TRITON_URL=slow_triton.url) as c:
        url = c.put_image("slow.jpg", jpeg(size=320))
        worker = c.start_worker(concurrency=1)
        c.start_reconciler()
        batch = submit(c, url, tmp=tmp_path)
        [job] = c.ledger.list_jobs(batch_id=batch)
        wait_for(lambda: c.ledger.get(job.id).status is JobStatus.RUNNING, 30,
                 "the job to be claimed", c.logs)
        time.sleep(0.5)  # inside the 3 s inference
        c.kill(worker)
        assert c.ledger.get(job.id).status is JobStatus.RUNNING  # the dead worker's lease
        c.start_worker(concurrency=1)
        c.wait_batch(batch, timeout=120)
        done = c.ledger.get(job.id)
        assert done.status is JobStatus.SUCCEEDED, c.logs()
        assert done.attempts == 2
        history = events(c, job.id)
        assert history.count("completed") == 1
        assert "reaped" in history
        assert len(c.output_keys(job.id)) == 1


def test_a_threads_pool_worker_holds_several_jobs_at_once_in_one_process(
    tmp_path: Path, s3_endpoint: str, slow_triton: TritonServer
) -> None:
    """`clipline worker --pool threads`: while one job waits 3 s on Triton the others are
    claimed and sent too, all by the same process; every job still ends exactly once."""
    with cluster(tmp_path, s3_endpoint, SEGMENTER="triton", TRITON_URL=slow_triton.url) as c:
        urls = [c.put_image(f"th{i}.jpg", jpeg(size=320)) for i in range(4)]
        c.start_worker(concurrency=4, pool="threads")
        batch = submit(c, *urls, tmp=tmp_path)
        counts = c.wait_batch(batch, timeout=120)
        assert counts[JobStatus.SUCCEEDED] == 4, c.logs()
        jobs = c.ledger.list_jobs(batch_id=batch)
        history = {j.id: c.ledger.events(j.id) for j in jobs}
        claimed = [e.at for evs in history.values() for e in evs if e.action == "claimed"]
        completed = [e.at for evs in history.values() for e in evs if e.action == "completed"]
        assert len(claimed) == len(completed) == 4 and all(j.attempts == 1 for j in jobs)
        assert max(claimed) < min(completed)  # all four in flight before the first finished
        workers = {e.worker for evs in history.values() for e in evs if e.action == "claimed"}
        assert len(workers) == 1, workers  # one process (host:pid) held them all
        assert "worker_time_limits_not_enforced" in c.log_text()


def test_redis_flushed_mid_run_every_job_still_finishes(dist: Cluster, tmp_path: Path) -> None:
    """Here the reconciler runs on Celery beat inside the worker (`clipline worker --beat`)."""
    data = jpeg(size=320)
    urls = [dist.put_image(f"f{i}.jpg", data) for i in range(12)]
    batch = submit(dist, *urls, tmp=tmp_path)  # messages wait in Redis: no worker yet
    assert dist.queue.depth() == 12
    dist.redis.flushall()
    assert dist.queue.depth() == 0
    dist.start_worker(beat=True)
    counts = dist.wait_batch(batch, timeout=120)
    assert counts[JobStatus.SUCCEEDED] == 12, dist.logs()


def test_the_same_job_delivered_twice_at_once_has_one_effect(
    tmp_path: Path, s3_endpoint: str, slow_triton: TritonServer
) -> None:
    with cluster(tmp_path, s3_endpoint, SEGMENTER="triton", TRITON_URL=slow_triton.url) as c:
        c.put_image("twice.jpg", jpeg(size=320))
        job = c.ledger.submit(JobSpec(bucket="photos", key="twice.jpg", model=TEST_MODEL)).job
        c.start_worker(concurrency=2)
        c.queue.publish([Dispatch(job.id), Dispatch(job.id)])
        wait_for(lambda: c.ledger.get(job.id).status is JobStatus.SUCCEEDED, 60,
                 "the job to succeed", c.logs)
        wait_for(lambda: c.queue.depth() == 0, 10, "both messages to be consumed")
        time.sleep(1.0)  # let the second delivery finish its (skipped) run
        done = c.ledger.get(job.id)
        assert done.attempts == 1
        assert events(c, job.id) == ["claimed", "completed"]
        assert len(c.output_keys(job.id)) == 1
        assert "'skipped'" in c.log_text()  # Celery logs each task's return value


def test_a_job_past_the_soft_time_limit_fails_as_a_timeout_and_is_retried(
    tmp_path: Path, s3_endpoint: str, slow_triton: TritonServer
) -> None:
    with cluster(tmp_path, s3_endpoint, SEGMENTER="triton", TRITON_URL=slow_triton.url,
                 TASK_SOFT_TIME_LIMIT_SECONDS="1", TASK_TIME_LIMIT_SECONDS="20") as c:
        c.put_image("slow.jpg", jpeg(size=320))
        job = c.ledger.submit(JobSpec(bucket="photos", key="slow.jpg", model=TEST_MODEL)).job
        c.start_worker(concurrency=1)
        c.queue.publish([Dispatch(job.id)])

        def timed_out() -> bool:
            return any(e.action == "failed" and e.error_code == "timeout"
                       for e in c.ledger.events(job.id))

        wait_for(timed_out, 60, "a failure with reason timeout", c.logs)
        failed = next(e for e in c.ledger.events(job.id) if e.action == "failed")
        assert failed.to_status == "queued"  # transient: retried, not dead
        assert "soft time limit" in (failed.error_message or "")
