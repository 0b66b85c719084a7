"""Circuit breakers (pipeline/breaker.py) and how the job runner uses them, on the fakes."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from pipeline.breaker import Breakers, dependency_of
from pipeline.errors import (
    CorruptImage,
    InferenceUnavailable,
    LedgerUnavailable,
    OperationTimeout,
    StorageUnavailable,
)
from pipeline.jobs import JobStatus
from pipeline.worker import Outcome
from tests.unit.test_worker import FlakySegmenter, World, red_square


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breakers(clock: Clock) -> Breakers:
    return Breakers(threshold=3, probe_after=5.0, clock=clock)


def test_outages_are_named_by_dependency_and_other_failures_are_not_outages() -> None:
    assert dependency_of(InferenceUnavailable()) == "inference"
    assert dependency_of(StorageUnavailable()) == "storage"
    assert dependency_of(LedgerUnavailable()) == "ledger"
    assert dependency_of(OperationTimeout()) == "other"
    assert dependency_of(OperationTimeout("soft time limit", outage=False)) is None
    assert dependency_of(CorruptImage()) is None


def test_opens_after_the_threshold_then_lets_one_probe_through_and_closes_on_success() -> None:
    clock = Clock()
    b = breakers(clock)
    for _ in range(2):
        b.failed(InferenceUnavailable())
    assert b.open_ones() == [] and b.acquire(0)
    b.failed(InferenceUnavailable())
    assert b.open_ones() == ["inference"]
    assert not b.acquire(0)  # open: no job is taken
    clock.now = 5.0
    assert b.acquire(0)  # the probe
    assert not b.acquire(0)  # only one at a time
    b.succeeded()
    assert b.open_ones() == [] and b.acquire(0)


def test_a_failed_probe_opens_it_again_for_another_wait() -> None:
    clock = Clock()
    b = breakers(clock)
    for _ in range(3):
        b.failed(StorageUnavailable())
    clock.now = 5.0
    assert b.acquire(0)
    b.failed(StorageUnavailable())
    assert not b.acquire(0)
    clock.now = 9.9
    assert not b.acquire(0)
    clock.now = 10.0
    assert b.acquire(0)


def test_a_failure_of_the_job_itself_proves_nothing_and_lets_the_next_probe_through() -> None:
    clock = Clock()
    b = breakers(clock)
    for _ in range(3):
        b.failed(InferenceUnavailable())
    clock.now = 5.0
    assert b.acquire(0)
    b.failed(CorruptImage())  # refused at decode: Triton was never asked
    assert b.open_ones() == ["inference"]
    assert b.acquire(0)  # another job probes at once


def test_a_probe_that_found_nothing_to_do_lets_the_next_one_try() -> None:
    clock = Clock()
    b = breakers(clock)
    for _ in range(3):
        b.failed(InferenceUnavailable())
    clock.now = 5.0
    assert b.acquire(0) and not b.acquire(0)
    b.release_probe()
    assert b.acquire(0)


def test_a_waiting_caller_wakes_when_the_breaker_closes() -> None:
    b = Breakers(threshold=1, probe_after=60.0)
    b.failed(InferenceUnavailable())
    got: list[bool] = []
    waiter = threading.Thread(target=lambda: got.append(b.acquire(10.0)))
    waiter.start()
    b.succeeded()  # another process's probe went through, say
    waiter.join(5)
    assert got == [True]


# -- the runner ---------------------------------------------------------------------------


def down_world(**config: Any) -> World:
    world = World(FlakySegmenter(failures=100), breaker_threshold=2, breaker_wait_seconds=0.01,
                  breaker_probe_seconds=0.05, **config)
    world.ledger.backoff = type(world.ledger.backoff)(2.0, 600.0, outage_budget=3600)
    return world


def test_while_triton_is_down_the_runner_claims_nothing_and_sends_the_message_back() -> None:
    world = down_world()
    ids = [world.job(f"{i}.png", red_square()) for i in range(5)]
    outcomes = [world.runner.run(job_id, priority=7) for job_id in ids]
    assert outcomes[:2] == [Outcome.RETRY_SCHEDULED] * 2  # the failures that opened it
    assert outcomes[2:] == [Outcome.DEFERRED] * 3
    for job_id in ids:
        job = world.ledger.get(job_id)
        assert (job.status, job.attempts) == (JobStatus.QUEUED, 0)  # outages spent nothing
    deferred = [d for d in world.queue.drain() if d.job_id in ids[2:]]
    assert [(d.priority, d.delay) for d in deferred] == [(7, 0.05)] * 3


def test_the_probe_after_the_outage_closes_the_breaker_and_work_resumes() -> None:
    world = down_world()
    first, second = world.job("a.png", red_square()), world.job("b.png", red_square())
    for _ in range(2):
        world.runner.run(first)
        world.clock.advance(120)
    assert world.runner.run(second) is Outcome.DEFERRED
    world.segmenter.failures = 0  # Triton is back  # type: ignore[attr-defined]
    world.runner.breakers.clock = lambda: 1e9  # the probe's wait is over
    assert world.runner.run(second) is Outcome.SUCCEEDED
    assert world.runner.run(first) is Outcome.SUCCEEDED
    assert world.ledger.get(first).attempts == 1  # two outages given back, one real try


class DownAtClaim:
    """Wraps a ledger whose database refuses the claim (and mark_published) ``times`` times."""

    def __init__(self, ledger: Any, times: int, method: str) -> None:
        self.ledger, self.times, self.method = ledger, times, method

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.ledger, name)
        if name != self.method:
            return real

        def flaky(*args: Any, **kwargs: Any) -> Any:
            if self.times:
                self.times -= 1
                raise LedgerUnavailable("connection refused")
            return real(*args, **kwargs)
        return flaky


def test_a_database_down_at_claim_defers_the_message_without_a_traceback() -> None:
    world = World()
    job_id = world.job("a.png", red_square())
    world.runner.ledger = DownAtClaim(world.ledger, 1, "claim")
    assert world.runner.run(job_id, priority=3) is Outcome.DEFERRED
    assert [d.job_id for d in world.queue.drain()] == [job_id]
    assert world.ledger.get(job_id).attempts == 0
    assert world.runner.run(job_id) is Outcome.SUCCEEDED


def test_a_database_that_blinks_at_complete_is_retried_in_place() -> None:
    world = World(ledger_retry_seconds=5.0)
    job_id = world.job("a.png", red_square())
    world.runner.ledger = DownAtClaim(world.ledger, 2, "complete")
    assert world.runner.run(job_id) is Outcome.SUCCEEDED
    job = world.ledger.get(job_id)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 1)  # no second attempt


def test_a_database_down_longer_than_the_retry_leaves_the_job_to_its_lease() -> None:
    world = World(ledger_retry_seconds=0.3)
    job_id = world.job("a.png", red_square())
    world.runner.ledger = DownAtClaim(world.ledger, 100, "complete")
    try:
        world.runner.run(job_id)
        raise AssertionError("the last error should come out")
    except LedgerUnavailable:
        pass
    assert world.ledger.get(job_id).status is JobStatus.RUNNING  # reaped when the lease ends
    assert uuid.UUID(str(job_id))
