"""Explicit idempotency keys, one contract for every ledger: the key stands for the whole
request, and its reuse with any difference is refused, naming the fields that differ."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from pipeline.clock import ManualClock
from pipeline.errors import IdempotencyConflict
from pipeline.jobs import JobSpec, dedupe_key_of

Ledger = Any  # SqlLedger | MemoryLedger
DEADLINE = datetime(2030, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
HOOK = "https://example.com/hooks/a"


def spec(**kw: Any) -> JobSpec:
    fields: dict[str, Any] = {"bucket": "photos", "key": "a.jpg", "options": {"format": "png"},
                              "priority": 5, "idempotency_key": "sku-1", **kw}
    return JobSpec(**fields)


def conflict(ledger: Ledger, again: JobSpec, callback_url: str | None = None) -> list[str]:
    with pytest.raises(IdempotencyConflict) as caught:
        ledger.submit(again, callback_url=callback_url)
    return caught.value.fields


def test_the_same_request_again_is_the_same_job(ledger: Ledger) -> None:
    first = ledger.submit(spec(), callback_url=HOOK)
    again = ledger.submit(spec(), callback_url=HOOK)
    assert first.created and not again.created
    assert again.job.id == first.job.id
    assert again.job.request == spec().request(HOOK)


@pytest.mark.parametrize(("change", "named"), [
    ({"priority": 9}, ["priority"]),
    ({"options": {"format": "webp"}}, ["options.format"]),
    ({"options": {"format": "png", "crop": True}}, ["options.crop"]),
    ({"key": "b.jpg"}, ["source.key"]),
    ({"bucket": "other", "version": "v2"}, ["source.bucket", "source.version"]),
    ({"model": "isnet-general-use"}, ["model"]),  # not the default model, whichever it is
    ({"deadline": DEADLINE}, ["deadline", "priority"]),
])
def test_a_reuse_with_another_field_is_refused_naming_it(
    ledger: Ledger, change: dict[str, Any], named: list[str]
) -> None:
    first = ledger.submit(spec()).job
    assert conflict(ledger, spec(**change)) == named
    assert ledger.get(first.id) == first


def test_a_reuse_with_another_or_an_added_callback_is_refused(ledger: Ledger) -> None:
    ledger.submit(spec())
    assert conflict(ledger, spec(), callback_url=HOOK) == ["callback_url"]
    ledger.submit(spec(idempotency_key="sku-2"), callback_url=HOOK)
    assert conflict(ledger, spec(idempotency_key="sku-2"),
                    callback_url=HOOK + "x") == ["callback_url"]
    assert conflict(ledger, spec(idempotency_key="sku-2", priority=1),
                    callback_url=None) == ["callback_url", "priority"]


def test_the_message_names_the_key_and_the_fields(ledger: Ledger) -> None:
    ledger.submit(spec())
    with pytest.raises(IdempotencyConflict, match=r"'sku-1'.*differs in priority"):
        ledger.submit(spec(priority=1))


def test_a_deadline_is_compared_as_sent_not_as_the_priority_it_became(
    ledger: Ledger, clock: ManualClock
) -> None:
    first = ledger.submit(spec(deadline=DEADLINE, priority=2)).job
    clock.advance(60)
    # resent later: nearer, so a caller would derive a higher priority; the same request
    same_instant = DEADLINE.astimezone(timezone(timedelta(hours=2)))
    again = ledger.submit(spec(deadline=same_instant, priority=7))
    assert not again.created and again.job.id == first.id
    assert conflict(ledger, spec(deadline=DEADLINE + timedelta(seconds=1))) == ["deadline"]
    assert conflict(ledger, spec(priority=2)) == ["deadline", "priority"]


def test_a_derived_key_folds_whatever_the_priority_or_callback(ledger: Ledger) -> None:
    first = ledger.submit(spec(idempotency_key=None))
    again = ledger.submit(spec(idempotency_key=None, priority=9), callback_url=HOOK)
    assert not again.created and again.job.id == first.job.id
    assert (again.job.priority, again.job.callback_url) == (5, None)
    assert again.job.request is None


def test_a_key_derived_from_the_source_folds_like_the_ledger_s_own(ledger: Ledger) -> None:
    """An S3 event's key (its identity and sequencer, hashed) is not the client's: the same
    write redelivered after its rule's priority changed is still the same job."""
    key = dedupe_key_of(spec().identity() + "#0055AED6DCD90281E5")
    first = ledger.submit(spec(idempotency_key=key)).job
    again = ledger.submit(spec(idempotency_key=key, priority=9))
    assert not again.created and again.job.id == first.id and first.request is None
    with pytest.raises(IdempotencyConflict):  # another source is still another job
        ledger.submit(spec(idempotency_key=key, key="b.jpg"))


def test_a_manifest_line_reusing_a_key_for_another_request_refuses_the_manifest(
    ledger: Ledger,
) -> None:
    ledger.submit(spec())
    batch = ledger.create_batch()
    lines = [spec(key=f"{i}.jpg", idempotency_key=None) for i in range(3)]
    with pytest.raises(IdempotencyConflict) as caught:
        ledger.submit_many([*lines, spec(priority=6)], batch_id=batch)
    assert caught.value.fields == ["priority"]
    assert ledger.list_jobs(batch_id=batch) == []  # nothing of it was recorded


def test_two_manifest_lines_with_one_key_and_different_requests_refuse_the_manifest(
    ledger: Ledger,
) -> None:
    lines = [spec(), spec(key="b.jpg"), spec()]
    with pytest.raises(IdempotencyConflict) as caught:
        ledger.submit_many(lines)
    assert caught.value.fields == ["source.key"]
    assert ledger.list_jobs() == []


def test_a_manifest_repeating_a_keyed_request_folds(ledger: Ledger) -> None:
    hook = "https://example.com/hooks/batch"
    first = ledger.submit(spec(), callback_url=hook).job
    result = ledger.submit_many([spec(), spec(), spec(key="c.jpg", idempotency_key="sku-3")],
                                callback_url=hook)
    assert (result.received, result.inserted) == (3, 1)
    assert ledger.submit(spec(key="c.jpg", idempotency_key="sku-3"), callback_url=hook
                         ).job.request == spec(key="c.jpg", idempotency_key="sku-3").request(hook)
    assert ledger.get(first.id).request == spec().request(hook)
