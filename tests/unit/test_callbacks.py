"""Callback signatures and the delivery rules, on the in-package fakes."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Mapping
from typing import Any

from pipeline.callbacks import deliver_due, sign, verify
from pipeline.retry import Backoff

SECRET = "s" * 64


def test_a_signature_verifies_and_a_tampered_or_stale_one_does_not() -> None:
    body = b'{"id":"1","status":"succeeded"}'
    now = int(time.time())
    header = sign(SECRET, now, body)
    assert verify(SECRET, header, body)
    assert not verify(SECRET, header, body.replace(b"succeeded", b"dead"))
    assert not verify("other" * 13, header, body)
    assert not verify(SECRET, sign(SECRET, now - 3600, body), body)
    assert not verify(SECRET, "garbage", body)


class Ledger:
    """Just enough ledger for deliver_due: hands out the jobs given, records results."""

    def __init__(self, jobs: list[Any]) -> None:
        from pipeline.clock import ManualClock

        self.clock = ManualClock()
        self.jobs, self.results = jobs, []  # type: ignore[var-annotated]

    def due_callbacks(self, limit: int, *, hold_seconds: float = 60.0) -> list[Any]:
        due, self.jobs = self.jobs[:limit], self.jobs[limit:]
        return due

    def callback_result(self, job_id: Any, *, error: str | None, retry_at: Any = None) -> None:
        self.results.append((job_id, error, retry_at))


class Sender:
    def __init__(self, answers: list[str | None]) -> None:
        self.answers, self.calls = answers, []  # type: ignore[var-annotated]

    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> str | None:
        self.calls.append((url, body, dict(headers)))
        return self.answers.pop(0)


def job(attempts: int = 0, tenant: str = "acme") -> Any:
    from datetime import UTC, datetime

    from pipeline.jobs import Job, JobStatus

    now = datetime.now(UTC)
    return Job(
        id=uuid.uuid4(), tenant_id=tenant, batch_id=None, bucket="b", key="k",
        version=None, options={}, model="u2netp", idempotency_key="x", priority=0,
        status=JobStatus.SUCCEEDED, attempts=1, max_attempts=3, not_before=now,
        lease_token=None, lease_expires_at=None, leased_by=None, last_error_code=None,
        last_error_message=None, result={"output": {"bucket": "o", "key": "c.png"}},
        created_at=now, updated_at=now, finished_at=now, callback_url="https://hook/x",
        callback_state="pending", callback_attempts=attempts,
    )


def test_delivered_retried_and_failed_for_good() -> None:
    jobs = [job(), job(attempts=0), job(attempts=7)]
    ledger, sender = Ledger(jobs), Sender([None, "HTTP 500", "HTTP 500"])
    report = deliver_due(ledger, sender, lambda tenant: SECRET, backoff=Backoff(1, 10),
                         max_attempts=8, rng=random.Random(1))
    assert (report.delivered, report.retrying, report.failed) == (1, 1, 1)
    (_, ok, _), (_, retry_error, retry_at), (_, final_error, final_at) = ledger.results
    assert ok is None and retry_error == "HTTP 500" and retry_at is not None
    assert final_error == "HTTP 500" and final_at is None
    url, body, headers = sender.calls[0]
    assert url == "https://hook/x" and verify(SECRET, headers["Clipline-Signature"], body)
    assert b'"status":"succeeded"' in body and b'"key":"c.png"' in body


def test_a_tenant_without_a_secret_is_not_sent_anything() -> None:
    ledger, sender = Ledger([job()]), Sender([])
    report = deliver_due(ledger, sender, lambda tenant: None, backoff=Backoff(1, 10))
    assert report.failed == 1 and sender.calls == []
