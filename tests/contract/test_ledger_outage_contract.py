"""The outage rule, held to one contract by every ledger (in-memory, SQLite, PostgreSQL).

A failure that says a shared dependency is down gives its attempt back; the job waits the
outage out until the outage budget is spent, then is dead with the dependency's own reason
(``pipeline.retry``). Any other failure spends attempts as before and ends the outage.
"""

from __future__ import annotations

from typing import Any

from pipeline.clock import ManualClock
from pipeline.errors import (
    InferenceUnavailable,
    LedgerUnavailable,
    OperationTimeout,
    StorageUnavailable,
    UnexpectedError,
)
from pipeline.jobs import JobSpec, JobStatus
from pipeline.retry import Backoff

Ledger = Any
BUDGET = 300.0


def outage_ledger(ledger: Ledger, budget: float = BUDGET) -> Ledger:
    ledger.backoff = Backoff(base=2.0, cap=60.0, outage_budget=budget, outage_cap=60.0)
    return ledger


def fail_once(ledger: Ledger, job_id: Any, error: Exception) -> Any:
    claim = ledger.claim(job_id, worker="w")
    assert claim is not None
    return ledger.fail(job_id, claim.token, error)


def test_an_outage_longer_than_every_attempt_spends_none(ledger: Ledger,
                                                         clock: ManualClock) -> None:
    ledger = outage_ledger(ledger, budget=3600)  # max_attempts is 3 in this suite
    job = ledger.submit(JobSpec(bucket="photos", key="a.jpg")).job
    started = clock.now()
    for error in [InferenceUnavailable("triton down")] * 8 + [StorageUnavailable(),
                                                             LedgerUnavailable()]:
        failed = fail_once(ledger, job.id, error)
        assert (failed.status, failed.attempts, failed.outage_since) == (
            JobStatus.QUEUED, 0, started)
        delay = (failed.not_before - clock.now()).total_seconds()
        assert 1.0 <= delay <= 60.0
        clock.advance(delay)
    assert failed.last_error_code == "ledger_unavailable"
    events = [e for e in ledger.events(job.id) if e.action == "failed"]
    assert [e.attempt for e in events] == [1] * 10  # each names the attempt that failed


def test_an_outage_past_the_budget_is_dead_with_its_own_reason(ledger: Ledger,
                                                               clock: ManualClock) -> None:
    ledger = outage_ledger(ledger)
    job = ledger.submit(JobSpec(bucket="photos", key="a.jpg")).job
    fail_once(ledger, job.id, InferenceUnavailable("triton down"))
    clock.advance(BUDGET - 1)
    assert fail_once(ledger, job.id, InferenceUnavailable("triton down")).status is JobStatus.QUEUED
    clock.advance(61)
    dead = fail_once(ledger, job.id, InferenceUnavailable("triton down"))
    assert (dead.status, dead.last_error_code) == (JobStatus.DEAD, "inference_unavailable")
    assert dead.last_error_message.startswith("triton down (still failing after 36")
    assert "outage budget" in dead.last_error_message


def test_a_failure_of_the_job_ends_the_outage_and_spends_attempts(ledger: Ledger,
                                                                  clock: ManualClock) -> None:
    ledger = outage_ledger(ledger)
    job = ledger.submit(JobSpec(bucket="photos", key="a.jpg")).job
    fail_once(ledger, job.id, InferenceUnavailable())
    clock.advance(60)
    mine = fail_once(ledger, job.id, UnexpectedError("KeyError: 'x'"))
    assert (mine.status, mine.attempts, mine.outage_since) == (JobStatus.QUEUED, 1, None)
    clock.advance(60)
    again = fail_once(ledger, job.id, InferenceUnavailable())
    assert (again.attempts, again.outage_since) == (1, clock.now())  # a new outage starts


def test_a_timeout_of_the_job_itself_spends_attempts(ledger: Ledger, clock: ManualClock) -> None:
    ledger = outage_ledger(ledger)
    job = ledger.submit(JobSpec(bucket="photos", key="a.jpg")).job
    for _ in range(3):
        last = fail_once(ledger, job.id, OperationTimeout("soft time limit", outage=False))
        clock.advance(600)
    assert (last.status, last.attempts, last.last_error_code) == (JobStatus.DEAD, 3, "timeout")


def test_without_a_budget_an_outage_spends_attempts(ledger: Ledger, clock: ManualClock) -> None:
    job = ledger.submit(JobSpec(bucket="photos", key="a.jpg")).job  # the suite's Backoff: off
    for _ in range(3):
        last = fail_once(ledger, job.id, InferenceUnavailable())
        clock.advance(600)
    assert (last.status, last.attempts, last.outage_since) == (JobStatus.DEAD, 3, None)


def test_redrive_forgets_the_outage(ledger: Ledger, clock: ManualClock) -> None:
    ledger = outage_ledger(ledger)
    job = ledger.submit(JobSpec(bucket="photos", key="a.jpg")).job
    fail_once(ledger, job.id, InferenceUnavailable())
    clock.advance(BUDGET + 60)
    assert fail_once(ledger, job.id, InferenceUnavailable()).status is JobStatus.DEAD
    assert ledger.redrive(ids=[job.id]) == 1
    back = ledger.get(job.id)
    assert (back.status, back.attempts, back.outage_since) == (JobStatus.QUEUED, 0, None)
