"""Wake-up bookkeeping, one contract for every ledger: which queued jobs need a message.

A job submitted by a producer counts as published (the producer sends its message right after
the commit). What the reconciler must publish: retries and reaped leases once due, redriven jobs,
and, when asked, messages sent long ago that nobody acted on.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from pipeline.clock import ManualClock
from pipeline.errors import InferenceUnavailable, NotAnImage
from pipeline.jobs import Dispatch, JobSpec

Ledger = Any  # SqlLedger | MemoryLedger


def spec(key: str, priority: int = 0) -> JobSpec:
    return JobSpec(bucket="photos", key=key, priority=priority)


def test_fresh_submissions_need_no_message(ledger: Ledger, clock: ManualClock) -> None:
    ledger.submit(spec("a"))
    ledger.submit_many([spec("b"), spec("c")])
    clock.advance(3600)
    assert ledger.take_unpublished(10) == []


def test_a_retry_is_unpublished_once_due_and_taken_once(ledger: Ledger, clock: ManualClock) -> None:
    job = ledger.submit(spec("a", priority=7)).job
    claim = ledger.claim(job.id, worker="w")
    failed = ledger.fail(job.id, claim.token, InferenceUnavailable("down"))
    assert ledger.take_unpublished(10) == []  # not due yet
    clock.advance((failed.not_before - clock.now()).total_seconds())
    assert ledger.take_unpublished(10) == [Dispatch(job.id, 7)]
    assert ledger.take_unpublished(10) == []  # stamped: a second reconciler finds nothing
    assert ledger.get(job.id).published_at == clock.now()


def test_a_retry_published_with_a_countdown_is_not_taken(
    ledger: Ledger, clock: ManualClock
) -> None:
    job = ledger.submit(spec("a")).job
    claim = ledger.claim(job.id, worker="w")
    failed = ledger.fail(job.id, claim.token, InferenceUnavailable("down"))
    ledger.mark_published(job.id, failed.not_before)
    clock.advance((failed.not_before - clock.now()).total_seconds() + 1)
    assert ledger.take_unpublished(10) == []


def test_reaped_and_redriven_jobs_are_unpublished(ledger: Ledger, clock: ManualClock) -> None:
    reaped = ledger.submit(spec("a")).job
    ledger.claim(reaped.id, worker="w")
    dead = ledger.submit(spec("b")).job
    claim = ledger.claim(dead.id, worker="w")
    ledger.fail(dead.id, claim.token, NotAnImage("text"))
    clock.advance(61)  # the lease of "a" expired
    assert ledger.reap().requeued == 1
    assert ledger.redrive(ids=[dead.id]) == 1
    clock.advance(120)  # past the reaped job's backoff
    taken = {d.job_id for d in ledger.take_unpublished(10)}
    assert taken == {reaped.id, dead.id}


def test_lost_messages_are_taken_only_when_asked_and_old(
    ledger: Ledger, clock: ManualClock
) -> None:
    first = ledger.submit(spec("a", priority=1)).job
    clock.advance(30)
    second = ledger.submit(spec("b", priority=9)).job
    clock.advance(40)  # first was published 70 s ago, second 40 s ago
    assert ledger.take_unpublished(10) == []
    assert ledger.take_unpublished(10, lost_after=60) == [Dispatch(first.id, 1)]
    clock.advance(61)
    # highest priority first; "a" was re-stamped 61 s ago so it is lost again
    assert ledger.take_unpublished(10, lost_after=60) == [
        Dispatch(second.id, 9), Dispatch(first.id, 1)]


def test_take_unpublished_is_bounded_and_skips_claimed_jobs(
    ledger: Ledger, clock: ManualClock
) -> None:
    ids = [ledger.submit(spec(f"k{i}")).job.id for i in range(5)]
    ledger.claim(ids[0], worker="w")
    clock.advance(100)
    batch = ledger.take_unpublished(3, lost_after=60)
    assert len(batch) == 3
    rest = ledger.take_unpublished(10, lost_after=60)
    assert {d.job_id for d in batch} | {d.job_id for d in rest} == set(ids[1:])


def test_mark_published_ignores_jobs_that_are_not_queued(
    ledger: Ledger, clock: ManualClock
) -> None:
    job = ledger.submit(spec("a")).job
    claim = ledger.claim(job.id, worker="w")
    before = ledger.get(job.id).published_at
    ledger.mark_published(job.id, clock.now() + timedelta(hours=1))
    assert ledger.get(job.id).published_at == before
    ledger.complete(job.id, claim.token, {})


def test_two_reconcilers_at_once_take_disjoint_sets(sql_ledger: Any, clock: ManualClock) -> None:
    sql_ledger.submit_many(spec(f"k{i}") for i in range(300))
    clock.advance(100)
    taken: list[list[Dispatch]] = [[], []]

    def drain(slot: int) -> None:
        while batch := sql_ledger.take_unpublished(20, lost_after=60):
            taken[slot].extend(batch)

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [d.job_id for d in taken[0] + taken[1]]
    assert len(ids) == len(set(ids)) == 300
