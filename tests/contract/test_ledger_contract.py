"""One contract for every ledger: in-memory, SQLite and PostgreSQL.

Every transition the status machine allows, and every refusal it owes, is checked here.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from pipeline.clock import ManualClock
from pipeline.errors import (
    IdempotencyConflict,
    InferenceUnavailable,
    JobNotFound,
    LeaseLost,
    NotAnImage,
    StorageUnavailable,
    TransitionRefused,
)
from pipeline.jobs import LEASE_EXPIRED, JobSpec, JobStatus

Ledger = Any  # SqlLedger | MemoryLedger, held to the same contract
LEASE = timedelta(seconds=60)


def spec(key: str = "a.jpg", **kw: Any) -> JobSpec:
    return JobSpec(bucket="photos", key=key, **kw)


# -- submit ---------------------------------------------------------------------------------


def test_submit_creates_a_queued_job(ledger: Ledger, clock: ManualClock) -> None:
    result = ledger.submit(spec(options={"format": "png"}, priority=5))
    job = result.job
    assert result.created
    assert (job.status, job.attempts, job.max_attempts, job.priority) == (JobStatus.QUEUED, 0, 3, 5)
    assert (job.bucket, job.key, job.options) == ("photos", "a.jpg", {"format": "png"})
    assert job.not_before == clock.now()
    assert job.lease_token is None
    assert ledger.get(job.id) == job


def test_submit_same_request_returns_existing_job(ledger: Ledger) -> None:
    first = ledger.submit(spec(options={"a": 1, "b": 2}))
    again = ledger.submit(spec(options={"b": 2, "a": 1}))
    assert not again.created
    assert again.job.id == first.job.id


def test_submit_different_version_or_options_is_a_new_job(ledger: Ledger) -> None:
    base = ledger.submit(spec()).job
    assert ledger.submit(spec(version="v2")).job.id != base.id
    assert ledger.submit(spec(options={"crop": True})).job.id != base.id
    assert ledger.submit(spec(model="isnet")).job.id != base.id


def test_explicit_key_reused_for_another_request_is_refused(ledger: Ledger) -> None:
    first = ledger.submit(spec(idempotency_key="k-1")).job
    assert ledger.submit(spec(idempotency_key="k-1")).job.id == first.id
    with pytest.raises(IdempotencyConflict):
        ledger.submit(spec(key="other.jpg", idempotency_key="k-1"))


def test_idempotency_keys_are_per_tenant(ledger: Ledger) -> None:
    ledger.ensure_tenant("acme")
    mine = ledger.submit(spec(idempotency_key="k")).job
    theirs = ledger.submit(spec(idempotency_key="k"), tenant="acme").job
    assert mine.id != theirs.id
    assert theirs.tenant_id == "acme"


def test_submit_many_folds_duplicates_inside_and_against_existing(ledger: Ledger) -> None:
    ledger.submit(spec("0.jpg"))
    batch = ledger.create_batch(label="night")
    manifest = [spec(f"{i % 40}.jpg") for i in range(100)]  # 40 distinct, one already stored
    result = ledger.submit_many(manifest, batch_id=batch)
    assert (result.received, result.inserted, result.duplicates) == (100, 39, 61)
    assert ledger.batch_counts(batch)[JobStatus.QUEUED] == 39
    again = ledger.submit_many(manifest, batch_id=batch)
    assert again.inserted == 0


def test_submit_many_keeps_options_priority_and_explicit_keys(ledger: Ledger) -> None:
    batch = ledger.create_batch()
    ledger.submit_many(
        [spec("x.jpg", options={"format": "webp"}, priority=3, idempotency_key="kx")],
        batch_id=batch,
    )
    claim = ledger.claim_next(1, worker="w")[0]
    assert (claim.job.options, claim.job.priority) == ({"format": "webp"}, 3)
    assert claim.job.idempotency_key == "kx"
    assert claim.job.batch_id == batch


# -- claim ----------------------------------------------------------------------------------


def test_claim_takes_a_lease_and_counts_the_attempt(ledger: Ledger, clock: ManualClock) -> None:
    job = ledger.submit(spec()).job
    claim = ledger.claim(job.id, worker="w1")
    assert claim is not None
    assert claim.job.status is JobStatus.RUNNING
    assert claim.attempt == 1
    assert claim.expires_at == clock.now() + LEASE
    assert claim.job.leased_by == "w1"
    assert ledger.get(job.id).lease_token == claim.token


def test_claim_refuses_a_live_lease(ledger: Ledger) -> None:
    job = ledger.submit(spec()).job
    assert ledger.claim(job.id, worker="w1") is not None
    assert ledger.claim(job.id, worker="w2") is None
    assert ledger.get(job.id).attempts == 1


def test_claim_refuses_terminal_jobs(ledger: Ledger) -> None:
    done, dead, cancelled = (ledger.submit(spec(f"{n}.jpg")).job for n in "abc")
    c = ledger.claim(done.id, worker="w")
    ledger.complete(done.id, c.token, {})
    c = ledger.claim(dead.id, worker="w")
    ledger.fail(dead.id, c.token, NotAnImage())
    ledger.cancel(cancelled.id)
    for job in (done, dead, cancelled):
        assert ledger.claim(job.id, worker="w") is None


def test_claim_refuses_unknown_and_not_yet_due(ledger: Ledger, clock: ManualClock) -> None:
    assert ledger.claim(uuid.uuid4(), worker="w") is None
    job = ledger.submit(spec()).job
    c = ledger.claim(job.id, worker="w")
    ledger.fail(job.id, c.token, StorageUnavailable())
    assert ledger.claim(job.id, worker="w") is None  # backing off
    clock.advance(60)
    assert ledger.claim(job.id, worker="w") is not None


def test_claim_next_orders_by_priority_then_age_and_respects_limit(
    ledger: Ledger, clock: ManualClock
) -> None:
    low = ledger.submit(spec("low.jpg", priority=0)).job
    clock.advance(1)
    high = ledger.submit(spec("high.jpg", priority=9)).job
    clock.advance(1)
    low2 = ledger.submit(spec("low2.jpg", priority=0)).job
    got = [c.job.id for c in ledger.claim_next(2, worker="w")]
    assert got == [high.id, low.id]
    assert [c.job.id for c in ledger.claim_next(5, worker="w")] == [low2.id]
    assert ledger.claim_next(5, worker="w") == []


# -- heartbeat and complete -----------------------------------------------------------------


def test_heartbeat_extends_the_lease(ledger: Ledger, clock: ManualClock) -> None:
    job = ledger.submit(spec()).job
    claim = ledger.claim(job.id, worker="w")
    clock.advance(50)
    assert ledger.heartbeat(job.id, claim.token) == clock.now() + LEASE
    clock.advance(50)  # past the first expiry, inside the extended one
    assert ledger.reap().requeued == 0
    assert ledger.get(job.id).status is JobStatus.RUNNING


def test_heartbeat_with_a_stale_token_is_refused(ledger: Ledger) -> None:
    job = ledger.submit(spec()).job
    ledger.claim(job.id, worker="w")
    with pytest.raises(LeaseLost):
        ledger.heartbeat(job.id, uuid.uuid4())
    with pytest.raises(JobNotFound):
        ledger.heartbeat(uuid.uuid4(), uuid.uuid4())


def test_complete_records_the_result_and_clears_the_lease(ledger: Ledger) -> None:
    job = ledger.submit(spec()).job
    claim = ledger.claim(job.id, worker="w")
    done = ledger.complete(job.id, claim.token, {"output": "s3://out/a.png", "bbox": [1, 2, 3, 4]})
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"output": "s3://out/a.png", "bbox": [1, 2, 3, 4]}
    assert (done.lease_token, done.lease_expires_at) == (None, None)
    assert done.finished_at is not None
    assert ledger.get(job.id) == done


def test_complete_twice_is_refused(ledger: Ledger) -> None:
    job = ledger.submit(spec()).job
    claim = ledger.claim(job.id, worker="w")
    ledger.complete(job.id, claim.token, {"n": 1})
    with pytest.raises(LeaseLost):
        ledger.complete(job.id, claim.token, {"n": 2})
    assert ledger.get(job.id).result == {"n": 1}


def test_stale_token_cannot_complete_after_the_job_moved_on(
    ledger: Ledger, clock: ManualClock
) -> None:
    job = ledger.submit(spec()).job
    zombie = ledger.claim(job.id, worker="zombie")
    clock.advance(61)
    assert ledger.reap().requeued == 1
    clock.advance(60)  # past the backoff
    fresh = ledger.claim(job.id, worker="fresh")
    assert fresh is not None and fresh.attempt == 2
    with pytest.raises(LeaseLost):
        ledger.complete(job.id, zombie.token, {"by": "zombie"})
    with pytest.raises(LeaseLost):
        ledger.fail(job.id, zombie.token, NotAnImage())
    assert ledger.get(job.id).status is JobStatus.RUNNING
    assert ledger.complete(job.id, fresh.token, {"by": "fresh"}).result == {"by": "fresh"}


def test_complete_of_an_unknown_job_is_not_found(ledger: Ledger) -> None:
    with pytest.raises(JobNotFound):
        ledger.complete(uuid.uuid4(), uuid.uuid4(), {})


# -- fail -----------------------------------------------------------------------------------


def test_transient_failure_requeues_with_backoff(ledger: Ledger, clock: ManualClock) -> None:
    job = ledger.submit(spec()).job
    claim = ledger.claim(job.id, worker="w")
    failed = ledger.fail(job.id, claim.token, InferenceUnavailable("triton down"))
    assert failed.status is JobStatus.QUEUED
    assert (failed.last_error_code, failed.last_error_message) == (
        "inference_unavailable", "triton down")
    # attempt 1 with base 2 s: between 1 and 2 seconds of backoff
    delay = (failed.not_before - clock.now()).total_seconds()
    assert 1.0 <= delay <= 2.0
    assert failed.lease_token is None


def test_backoff_grows_with_attempts(ledger: Ledger, clock: ManualClock) -> None:
    job = ledger.submit(spec()).job
    delays = []
    for _ in range(2):
        claim = ledger.claim(job.id, worker="w")
        failed = ledger.fail(job.id, claim.token, StorageUnavailable())
        delays.append((failed.not_before - clock.now()).total_seconds())
        clock.advance(600)
    assert 1.0 <= delays[0] <= 2.0
    assert 2.0 <= delays[1] <= 4.0


def test_transient_failure_with_attempts_spent_is_dead(ledger: Ledger, clock: ManualClock) -> None:
    job = ledger.submit(spec()).job
    for attempt in (1, 2, 3):
        claim = ledger.claim(job.id, worker="w")
        assert claim.attempt == attempt
        last = ledger.fail(job.id, claim.token, StorageUnavailable())
        clock.advance(600)
    assert last.status is JobStatus.DEAD
    assert last.last_error_code == "storage_unavailable"
    assert ledger.claim(job.id, worker="w") is None


def test_permanent_failure_is_dead_at_once(ledger: Ledger) -> None:
    job = ledger.submit(spec()).job
    claim = ledger.claim(job.id, worker="w")
    dead = ledger.fail(job.id, claim.token, NotAnImage("text named .jpg"))
    assert dead.status is JobStatus.DEAD
    assert (dead.attempts, dead.last_error_code, dead.last_error_message) == (
        1, "not_an_image", "text named .jpg")
    assert dead.finished_at is not None


# -- reap -----------------------------------------------------------------------------------


def test_reap_leaves_live_leases_alone(ledger: Ledger, clock: ManualClock) -> None:
    job = ledger.submit(spec()).job
    ledger.claim(job.id, worker="w")
    clock.advance(59)
    assert (ledger.reap().requeued, ledger.reap().dead) == (0, 0)
    assert ledger.get(job.id).status is JobStatus.RUNNING


def test_reap_requeues_an_expired_lease(ledger: Ledger, clock: ManualClock) -> None:
    job = ledger.submit(spec()).job
    ledger.claim(job.id, worker="w")
    clock.advance(61)
    assert ledger.reap().requeued == 1
    back = ledger.get(job.id)
    assert (back.status, back.last_error_code, back.lease_token) == (
        JobStatus.QUEUED, LEASE_EXPIRED, None)


def test_job_whose_workers_keep_dying_ends_dead(ledger: Ledger, clock: ManualClock) -> None:
    job = ledger.submit(spec()).job
    for _ in range(3):
        clock.advance(600)
        assert ledger.claim(job.id, worker="doomed") is not None
        clock.advance(61)  # the worker died: no heartbeat, no completion
        ledger.reap()
    dead = ledger.get(job.id)
    assert (dead.status, dead.attempts, dead.last_error_code) == (
        JobStatus.DEAD, 3, LEASE_EXPIRED)


# -- redrive, cancel, counts ----------------------------------------------------------------


def _dead(ledger: Ledger, key: str, error: Exception, **kw: Any) -> Any:
    job = ledger.submit(spec(key), **kw).job
    claim = ledger.claim(job.id, worker="w")
    return ledger.fail(job.id, claim.token, error)


def test_redrive_by_reason_ids_and_batch(ledger: Ledger) -> None:
    batch = ledger.create_batch()
    a = _dead(ledger, "a", NotAnImage())
    b = _dead(ledger, "b", NotAnImage(), batch_id=batch)
    c = _dead(ledger, "c", InferenceUnavailable("x"))  # transient: queued, not dead
    d = _dead(ledger, "d", TransitionRefusedLike())
    assert ledger.get(c.id).status is JobStatus.QUEUED
    assert ledger.redrive(batch_id=batch) == 1
    assert ledger.get(b.id).status is JobStatus.QUEUED
    assert ledger.redrive(reason="not_an_image") == 1
    assert ledger.redrive(ids=[d.id, c.id]) == 1  # c is not dead: untouched
    back = ledger.get(a.id)
    assert (back.status, back.attempts, back.last_error_code) == (JobStatus.QUEUED, 0, None)
    assert ledger.claim(a.id, worker="w") is not None


def test_redrive_needs_a_selector(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="redrive needs"):
        ledger.redrive()


def test_redrive_is_scoped_to_the_tenant(ledger: Ledger) -> None:
    ledger.ensure_tenant("acme")
    theirs = _dead(ledger, "t", NotAnImage(), tenant="acme")
    assert ledger.redrive(reason="not_an_image") == 0
    assert ledger.redrive(ids=[theirs.id]) == 0
    assert ledger.get(theirs.id).status is JobStatus.DEAD
    assert ledger.redrive(tenant="acme", ids=[theirs.id]) == 1


def test_cancel_queued_and_running(ledger: Ledger) -> None:
    queued = ledger.submit(spec("q")).job
    running = ledger.submit(spec("r")).job
    claim = ledger.claim(running.id, worker="w")
    assert ledger.cancel(queued.id).status is JobStatus.CANCELLED
    assert ledger.cancel(running.id).status is JobStatus.CANCELLED
    with pytest.raises(LeaseLost):
        ledger.complete(running.id, claim.token, {})
    assert ledger.get(running.id).status is JobStatus.CANCELLED


def test_cancel_refusals(ledger: Ledger) -> None:
    job = ledger.submit(spec()).job
    claim = ledger.claim(job.id, worker="w")
    ledger.complete(job.id, claim.token, {})
    with pytest.raises(TransitionRefused):
        ledger.cancel(job.id)
    with pytest.raises(JobNotFound):
        ledger.cancel(uuid.uuid4())
    ledger.ensure_tenant("acme")
    other = ledger.submit(spec("o"), tenant="acme").job
    with pytest.raises(JobNotFound):
        ledger.cancel(other.id, tenant="default")
    with pytest.raises(JobNotFound):
        ledger.get(other.id, tenant="default")


def test_batch_counts_by_status_and_dead_reason(ledger: Ledger) -> None:
    batch = ledger.create_batch()
    ledger.submit_many([spec(f"{i}.jpg") for i in range(6)], batch_id=batch)
    claims = ledger.claim_next(4, worker="w")
    ledger.complete(claims[0].job.id, claims[0].token, {})
    ledger.fail(claims[1].job.id, claims[1].token, NotAnImage())
    ledger.fail(claims[2].job.id, claims[2].token, NotAnImage())
    counts = ledger.batch_counts(batch)
    assert counts.by_status == {
        JobStatus.QUEUED: 2, JobStatus.RUNNING: 1, JobStatus.SUCCEEDED: 1, JobStatus.DEAD: 2}
    assert counts.dead_by_reason == {"not_an_image": 2}
    assert counts.total == 6


def test_every_transition_is_an_event(ledger: Ledger, clock: ManualClock) -> None:
    job = ledger.submit(spec()).job
    c = ledger.claim(job.id, worker="w1")
    ledger.fail(job.id, c.token, StorageUnavailable("503"))
    clock.advance(600)
    c = ledger.claim(job.id, worker="w2")
    clock.advance(61)
    ledger.reap()
    clock.advance(600)
    c = ledger.claim(job.id, worker="w3")
    ledger.fail(job.id, c.token, NotAnImage())
    ledger.redrive(ids=[job.id])
    got = [(e.action, e.from_status, e.to_status, e.attempt, e.worker, e.error_code)
           for e in ledger.events(job.id)]
    assert got == [
        ("claimed", "queued", "running", 1, "w1", None),
        ("failed", "running", "queued", 1, "w1", "storage_unavailable"),
        ("claimed", "queued", "running", 2, "w2", None),
        ("reaped", "running", "queued", 2, None, LEASE_EXPIRED),
        ("claimed", "queued", "running", 3, "w3", None),
        ("failed", "running", "dead", 3, "w3", "not_an_image"),
        ("redriven", "dead", "queued", 0, None, None),
    ]


class TransitionRefusedLike(NotAnImage):
    """A second permanent reason, to tell redrive-by-reason apart from redrive-by-id."""

    reason = "unsupported_format"


def test_claim_next_can_be_limited_to_one_batch(ledger: Ledger) -> None:
    mine, other = ledger.create_batch(), ledger.create_batch()
    ledger.submit_many([spec("o1"), spec("o2")], batch_id=other)
    ledger.submit_many([spec("m1")], batch_id=mine)
    got = ledger.claim_next(5, worker="w", batch_id=mine)
    assert [c.job.key for c in got] == ["m1"]
    assert ledger.claim_next(5, worker="w", batch_id=mine) == []
    assert len(ledger.claim_next(5, worker="w")) == 2


def test_create_batch_with_an_explicit_id_is_idempotent(ledger: Ledger) -> None:
    wanted = uuid.uuid4()
    assert ledger.create_batch(batch_id=wanted) == wanted
    assert ledger.create_batch(batch_id=wanted) == wanted


def test_reap_every_lease_takes_back_live_leases_for_a_sole_owner(ledger: Ledger) -> None:
    job = ledger.submit(spec()).job
    ledger.claim(job.id, worker="w")
    assert ledger.reap().requeued == 0
    assert ledger.reap(every_lease=True).requeued == 1
    assert ledger.get(job.id).status is JobStatus.QUEUED


def test_list_jobs_filters_and_pages_by_cursor(ledger: Ledger) -> None:
    batch = ledger.create_batch()
    ledger.submit_many([spec(f"{i}.jpg") for i in range(5)], batch_id=batch)
    ledger.submit(spec("elsewhere.jpg"))
    dead = _dead(ledger, "bad.jpg", NotAnImage(), batch_id=batch)
    first = ledger.page_jobs(batch_id=batch, limit=4)
    rest = ledger.page_jobs(batch_id=batch, after=first.next_cursor, limit=4)
    assert first.next_cursor is not None and rest.next_cursor is None
    first, rest = first.items, rest.items
    assert len(first) == 4 and len(rest) == 2
    assert {j.key for j in first + rest} == {*(f"{i}.jpg" for i in range(5)), "bad.jpg"}
    assert [j.id for j in ledger.list_jobs(status=JobStatus.DEAD, reason="not_an_image")] == [
        dead.id]
    assert ledger.list_jobs(tenant="nobody") == []
