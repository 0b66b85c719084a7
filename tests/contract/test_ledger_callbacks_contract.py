"""Completion-callback bookkeeping, one contract for every ledger: which finished jobs owe a
callback, holding them while one is sent, and recording how it went."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pipeline.clock import ManualClock
from pipeline.errors import NotAnImage
from pipeline.jobs import JobSpec

Ledger = Any  # SqlLedger | MemoryLedger
HOOK = "https://hooks.example/clipline"


def finished(ledger: Ledger, key: str, *, fail: bool = False, hook: str | None = HOOK) -> Any:
    job = ledger.submit(JobSpec(bucket="photos", key=key), callback_url=hook).job
    claim = ledger.claim(job.id, worker="w")
    if fail:
        return ledger.fail(job.id, claim.token, NotAnImage("text"))
    return ledger.complete(job.id, claim.token, {"output": {"bucket": "o", "key": key}})


def test_only_finished_jobs_with_a_callback_are_due(ledger: Ledger) -> None:
    done, dead = finished(ledger, "a"), finished(ledger, "b", fail=True)
    finished(ledger, "c", hook=None)
    ledger.submit(JobSpec(bucket="photos", key="d"), callback_url=HOOK)  # still queued
    due = ledger.due_callbacks(10)
    assert {j.id for j in due} == {done.id, dead.id}
    assert {j.callback_url for j in due} == {HOOK}
    assert ledger.due_callbacks(10) == []  # held while they are being sent


def test_a_held_callback_comes_back_when_its_hold_ends(ledger: Ledger, clock: ManualClock) -> None:
    job = finished(ledger, "a")
    assert [j.id for j in ledger.due_callbacks(10, hold_seconds=30)] == [job.id]
    clock.advance(31)
    assert [j.id for j in ledger.due_callbacks(10)] == [job.id]


def test_delivered_retried_and_failed_are_recorded(ledger: Ledger, clock: ManualClock) -> None:
    ok, retry, gone = finished(ledger, "a"), finished(ledger, "b"), finished(ledger, "c")
    ledger.due_callbacks(10)
    ledger.callback_result(ok.id, error=None)
    ledger.callback_result(retry.id, error="HTTP 500", retry_at=clock.now() + timedelta(seconds=5))
    ledger.callback_result(gone.id, error="HTTP 500")
    states = {j: (ledger.get(j).callback_state, ledger.get(j).callback_attempts)
              for j in (ok.id, retry.id, gone.id)}
    assert states == {ok.id: ("delivered", 1), retry.id: ("pending", 1), gone.id: ("failed", 1)}
    assert ledger.due_callbacks(10) == []
    clock.advance(6)
    assert [j.id for j in ledger.due_callbacks(10)] == [retry.id]
