"""The worker's job runner and the reconciler, on the in-package fakes.

The same behaviour against PostgreSQL, Redis, S3 and Triton with a real Celery worker is in
tests/integration/test_distributed.py; here each rule is pinned down quickly and exactly.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline.adapters.ledger.memory import MemoryLedger
from pipeline.adapters.queue.memory import MemoryQueue
from pipeline.adapters.segmenters.fake import FakeSegmenter, FakeSegmenters
from pipeline.adapters.storage.memory import MemoryStore
from pipeline.clock import ManualClock
from pipeline.errors import BrokerUnavailable, InferenceUnavailable, OperationTimeout
from pipeline.jobs import Dispatch, JobSpec, JobStatus
from pipeline.models import DEFAULT_MODEL
from pipeline.reconcile import ReconcileConfig, reconcile_once
from pipeline.retry import Backoff
from pipeline.worker import JobRunner, Outcome, RunnerConfig
from tests.pictures import square


def red_square() -> bytes:
    return square((200, 160), (60, 40, 140, 120), (200, 20, 20))


class FlakySegmenter(FakeSegmenter):
    """Fails the first ``failures`` calls as Triton does when it is down."""

    def __init__(self, failures: int = 0, error: Exception | None = None) -> None:
        super().__init__()
        self.failures = failures
        self.error = error or InferenceUnavailable("Triton at 127.0.0.1:1 is not reachable")

    def predict(self, images: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise self.error
        return super().predict(images)


class World:
    def __init__(self, segmenter: FakeSegmenter | None = None, **config: Any) -> None:
        self.clock = ManualClock()
        self.ledger = MemoryLedger(clock=self.clock, lease_seconds=60, max_attempts=3,
                                   backoff=Backoff(base=2.0, cap=600.0))
        self.store = MemoryStore()
        self.queue = MemoryQueue()
        self.segmenter = segmenter or FakeSegmenter()
        self.runner = JobRunner(
            self.ledger, self.store, FakeSegmenters({DEFAULT_MODEL: self.segmenter}), self.queue,
            self.clock, RunnerConfig(worker="w1", output_bucket="out", **config),
        )

    def use(self, segmenter: FakeSegmenter) -> None:
        """Jobs of the default model run on ``segmenter`` from now on."""
        self.segmenter = segmenter
        self.runner.segmenters = FakeSegmenters({DEFAULT_MODEL: segmenter})

    def job(self, key: str = "a.png", data: bytes | None = None) -> uuid.UUID:
        if data is not None:
            self.store.put("in", key, data, content_type="image/png")
        return self.ledger.submit(JobSpec(bucket="in", key=key)).job.id


def test_a_job_succeeds_with_its_output_and_result() -> None:
    world = World()
    job_id = world.job(data=red_square())
    assert world.runner.run(job_id) is Outcome.SUCCEEDED
    job = world.ledger.get(job_id)
    assert job.status is JobStatus.SUCCEEDED and job.attempts == 1
    assert job.result is not None
    key = job.result["output"]["key"]
    assert key == f"cutouts/default/{job_id}.png"
    stored = world.store.objects[("out", key)]
    assert stored.metadata["job-id"] == str(job_id)
    alpha = np.asarray(Image.open(io.BytesIO(stored.data)))[..., 3]
    assert alpha[80, 100] > 200 and alpha[5, 5] < 30


def test_a_second_delivery_of_a_finished_job_is_skipped() -> None:
    world = World()
    job_id = world.job(data=red_square())
    world.runner.run(job_id)
    assert world.runner.run(job_id) is Outcome.SKIPPED
    assert world.store.puts == 2  # the source, and one cut-out
    assert world.ledger.get(job_id).attempts == 1


def test_missing_and_corrupt_sources_are_dead_at_once_without_a_message() -> None:
    world = World()
    missing = world.job("gone.png")
    corrupt = world.job("bad.png", red_square()[:60])
    assert world.runner.run(missing) is Outcome.DEAD
    assert world.runner.run(corrupt) is Outcome.DEAD
    assert world.ledger.get(missing).last_error_code == "object_missing"
    assert world.ledger.get(corrupt).last_error_code in ("corrupt_image", "not_an_image")
    assert world.ledger.get(corrupt).attempts == 1
    assert world.queue.sent == []


def test_a_transient_failure_is_republished_with_its_backoff_as_countdown() -> None:
    world = World(FlakySegmenter(failures=1))
    job_id = world.job(data=red_square())
    assert world.runner.run(job_id) is Outcome.RETRY_SCHEDULED
    job = world.ledger.get(job_id)
    assert job.status is JobStatus.QUEUED and job.last_error_code == "inference_unavailable"
    [sent] = world.queue.drain()
    assert sent.job_id == job_id and 1.0 <= sent.delay <= 2.0
    assert job.published_at == job.not_before  # the reconciler will not send it again
    world.clock.advance(sent.delay)
    assert world.runner.run(job_id) is Outcome.SUCCEEDED
    assert world.ledger.get(job_id).attempts == 2


def test_a_long_backoff_is_left_to_the_reconciler() -> None:
    world = World(FlakySegmenter(failures=1), max_countdown_seconds=0.5)
    job_id = world.job(data=red_square())
    assert world.runner.run(job_id) is Outcome.RETRY_SCHEDULED
    assert world.queue.sent == []
    config = ReconcileConfig(batch_size=10)
    assert reconcile_once(world.ledger, world.queue, config).published == 0  # not due yet
    world.clock.advance(2.0)
    assert reconcile_once(world.ledger, world.queue, config).published == 1
    assert world.queue.drain() == [Dispatch(job_id, 0)]


def test_a_retry_whose_message_cannot_be_sent_is_left_to_the_reconciler() -> None:
    world = World(FlakySegmenter(failures=1))

    class DownQueue(MemoryQueue):
        def publish(self, dispatches: Any) -> None:
            raise BrokerUnavailable("redis://127.0.0.1:6379/0: connection refused")

    world.runner.queue = DownQueue()
    job_id = world.job(data=red_square())
    assert world.runner.run(job_id) is Outcome.RETRY_SCHEDULED
    world.clock.advance(2.0)
    assert [d.job_id for d in world.ledger.take_unpublished(10)] == [job_id]


def test_transient_failures_end_dead_when_attempts_are_spent() -> None:
    world = World(FlakySegmenter(failures=10))
    job_id = world.job(data=red_square())
    outcomes = []
    for _ in range(3):
        outcomes.append(world.runner.run(job_id))
        world.clock.advance(600)
    assert outcomes == [Outcome.RETRY_SCHEDULED, Outcome.RETRY_SCHEDULED, Outcome.DEAD]
    assert world.ledger.get(job_id).last_error_code == "inference_unavailable"


def test_an_unexpected_exception_is_recorded_not_raised() -> None:
    world = World(FlakySegmenter(failures=1, error=ZeroDivisionError("oops")))
    job_id = world.job(data=red_square())
    assert world.runner.run(job_id) is Outcome.RETRY_SCHEDULED
    job = world.ledger.get(job_id)
    assert job.last_error_code == "unexpected_error"
    assert "ZeroDivisionError: oops" in (job.last_error_message or "")


def test_the_host_can_translate_its_own_exceptions() -> None:
    class SoftLimit(Exception):
        pass

    world = World(FlakySegmenter(failures=1, error=SoftLimit()))
    world.runner._translate = lambda exc: (  # the Celery shell maps its soft time limit so
        OperationTimeout("soft time limit") if isinstance(exc, SoftLimit) else None)
    job_id = world.job(data=red_square())
    world.runner.run(job_id)
    assert world.ledger.get(job_id).last_error_code == "timeout"


def test_a_worker_whose_lease_was_taken_back_records_nothing() -> None:
    world = World()
    job_id = world.job(data=red_square())

    class Slow(FakeSegmenter):
        def predict(self, images: Any) -> Any:
            # while this attempt works, its lease expires and another worker takes the job
            world.clock.advance(61)
            world.ledger.reap()
            world.clock.advance(600)
            assert world.ledger.claim(job_id, worker="w2") is not None
            return super().predict(images)

    world.use(Slow())
    assert world.runner.run(job_id) is Outcome.LEASE_LOST
    assert world.ledger.get(job_id).status is JobStatus.RUNNING
    assert world.ledger.get(job_id).leased_by == "w2"


def test_heartbeats_keep_the_lease_while_work_is_slow() -> None:
    world = World(heartbeat_seconds=0.02)
    job_id = world.job(data=red_square())
    beats: list[float] = []
    real = world.ledger.heartbeat

    def counting(*args: Any) -> Any:
        beats.append(time.monotonic())
        return real(*args)

    world.ledger.heartbeat = counting  # type: ignore[method-assign]
    started = threading.Event()

    class Slow(FakeSegmenter):
        def predict(self, images: Any) -> Any:
            started.set()
            time.sleep(0.2)
            return super().predict(images)

    world.use(Slow())
    assert world.runner.run(job_id) is Outcome.SUCCEEDED
    assert len(beats) >= 3
    count = len(beats)
    time.sleep(0.1)
    assert len(beats) == count  # the heartbeat thread stopped with the job


def test_reconcile_reaps_then_publishes_and_looks_for_lost_only_when_drained() -> None:
    world = World()
    stuck = world.job("stuck.png")
    world.ledger.claim(stuck, worker="dead-worker")
    waiting = world.job("waiting.png")
    world.clock.advance(400)  # the lease is long expired; "waiting" was published 400 s ago
    world.queue.publish([Dispatch(uuid.uuid4())] * 20)  # a backlog in the broker
    config = ReconcileConfig(batch_size=10, lost_after_seconds=300)
    report = reconcile_once(world.ledger, world.queue, config)
    assert (report.requeued, report.published, report.looked_for_lost) == (1, 0, False)
    world.queue.drain()
    world.clock.advance(600)  # past the reaped job's backoff
    report = reconcile_once(world.ledger, world.queue, config)
    assert report.looked_for_lost
    assert {d.job_id for d in world.queue.drain()} == {stuck, waiting}


@pytest.mark.parametrize("jobs", [0, 25])
def test_reconcile_publishes_in_bounded_batches(jobs: int) -> None:
    world = World()
    for i in range(jobs):
        world.job(f"k{i}.png")
    world.clock.advance(400)
    report = reconcile_once(world.ledger, world.queue,
                            ReconcileConfig(batch_size=10, max_batches=2, lost_after_seconds=1))
    assert report.published == min(jobs, 20)
