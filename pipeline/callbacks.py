"""Completion callbacks: a signed POST to the job's callback URL once it has finished.

The body is the job as JSON (id, status, source, output, error). The header
``Clipline-Signature: t=<unix time>,v1=<hex>`` carries an HMAC-SHA256, keyed with the tenant's
callback secret, of ``<t>.<body>``: a receiver recomputes it (``verify``) and refuses stale
timestamps, so a captured call cannot be replayed later. Delivery is at least once: a receiver
should treat the job id as the idempotency key. A non-2xx answer or a network error is retried
with backoff up to ``max_attempts``; the state (pending, delivered, failed), the attempts and
the last error are recorded on the job. A URL whose address is inside the network
(``pipeline.callback_address``: the sender raises ``CallbackRefused``) is failed at once, the
refusal as its error, and never called.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from pipeline import logs
from pipeline.errors import CallbackRefused
from pipeline.jobs import Job
from pipeline.ports import Clock
from pipeline.retry import Backoff

HEADER = "Clipline-Signature"
log = logs.get(__name__)


class CallbackLedger(Protocol):
    clock: Clock

    def due_callbacks(self, limit: int, *, hold_seconds: float = 60.0) -> list[Job]: ...

    def callback_result(self, job_id: Any, *, error: str | None,
                        retry_at: Any = None) -> None: ...


class Sender(Protocol):
    def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> str | None:
        """POST; None when the receiver answered 2xx, else what went wrong. Raises
        ``CallbackRefused`` for an address it will not call."""
        ...


def payload(job: Job) -> dict[str, Any]:
    result = dict(job.result or {})
    return {
        "id": str(job.id), "tenant": job.tenant_id, "status": job.status.value,
        "batch_id": str(job.batch_id) if job.batch_id else None,
        "source": {"bucket": job.bucket, "key": job.key, "version": job.version},
        "output": result.get("output"), "error": job.last_error_code,
        "message": job.last_error_message, "attempts": job.attempts,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300,
           now: float | None = None) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int
    retrying: int
    failed: int


@dataclass(frozen=True, slots=True)
class Due:
    """One callback to send: what it is about (``about``: the log key, e.g. ``job_id``, and the
    id the outcome is recorded under), its tenant, URL, body and the attempts so far."""

    about: tuple[str, Any]
    tenant: str
    url: str | None
    body: Mapping[str, Any]
    attempts: int


# Records one attempt's outcome: (id, error or None, when to retry or None).
Record = Callable[[Any, str | None, Any], None]


def deliver(dues: Iterable[Due], record: Record, sender: Sender,
            secret_of: Callable[[str], str | None], *, clock: Clock, backoff: Backoff,
            max_attempts: int, rng: random.Random, log_as: str = "callback") -> DeliveryReport:
    """Send each due callback once, signed with its tenant's secret; record each outcome: a
    non-2xx answer or a network error is retried after ``backoff`` until ``max_attempts``; no
    secret, or an address the sender refuses, fails it at once. Logs ``<log_as>_refused`` and
    ``<log_as>_failed``."""
    delivered = retrying = failed = 0
    for due in dues:
        key, about = due.about
        secret = secret_of(due.tenant)
        body = json.dumps(due.body, separators=(",", ":")).encode()
        error: str | None = "the tenant has no callback secret"
        final = secret is None
        if secret is not None and due.url:
            headers = {"Content-Type": "application/json",
                       HEADER: sign(secret, int(time.time()), body)}
            try:
                error = sender.post(due.url, body, headers)
            except CallbackRefused as exc:
                error, final = f"{exc.reason} ({exc.why}): {exc}", True
                log.warning(f"{log_as}_refused", **{key: str(about)}, why=exc.why,
                            tenant=due.tenant)
        attempt = due.attempts + 1
        retry_at = None
        if error is not None and attempt < max_attempts and not final:
            retry_at = clock.now() + timedelta(seconds=backoff.delay(attempt, rng))
        record(about, error, retry_at)
        if error is None:
            delivered += 1
        elif retry_at is not None:
            retrying += 1
        else:
            failed += 1
            log.warning(f"{log_as}_failed", **{key: str(about)}, attempts=attempt, error=error)
    return DeliveryReport(delivered, retrying, failed)


def deliver_due(
    ledger: CallbackLedger, sender: Sender, secret_of: Callable[[str], str | None], *,
    backoff: Backoff, max_attempts: int = 8, limit: int = 100,
    rng: random.Random | None = None,
) -> DeliveryReport:
    """Send every due job callback once; record each outcome (``deliver``)."""
    dues = (Due(("job_id", job.id), job.tenant_id, job.callback_url, payload(job),
                job.callback_attempts) for job in ledger.due_callbacks(limit))
    return deliver(dues, lambda job_id, error, retry_at: ledger.callback_result(
        job_id, error=error, retry_at=retry_at), sender, secret_of, clock=ledger.clock,
        backoff=backoff, max_attempts=max_attempts, rng=rng or random.Random())
