"""Rows to values and back: how the ledger reads job rows and writes job events."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, Update, insert

from pipeline.adapters.ledger.database import translated
from pipeline.adapters.ledger.schema import job_events, jobs
from pipeline.errors import IdempotencyConflict
from pipeline.jobs import Job, JobSpec, JobStatus, request_differences


@dataclass(frozen=True, slots=True)
class JobEvent:
    at: datetime
    action: str
    from_status: str | None
    to_status: str
    attempt: int
    worker: str | None
    error_code: str | None
    error_message: str | None


def to_job(row: Any) -> Job:
    m = row._mapping
    return Job(
        id=m["id"],
        tenant_id=m["tenant_id"],
        batch_id=m["batch_id"],
        bucket=m["source_bucket"],
        key=m["source_key"],
        version=m["source_version"],
        options=m["options"],
        model=m["model"],
        idempotency_key=m["idempotency_key"],
        priority=m["priority"],
        status=JobStatus(m["status"]),
        attempts=m["attempts"],
        max_attempts=m["max_attempts"],
        not_before=m["not_before"],
        lease_token=m["lease_token"],
        lease_expires_at=m["lease_expires_at"],
        leased_by=m["leased_by"],
        last_error_code=m["last_error_code"],
        last_error_message=m["last_error_message"],
        result=m["result"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        finished_at=m["finished_at"],
        published_at=m["published_at"],
        callback_url=m["callback_url"],
        callback_state=m["callback_state"],
        callback_attempts=m["callback_attempts"],
        callback_next_at=m["callback_next_at"],
        outage_since=m["outage_since"],
        request=m["request"],
        output_bucket=m["output_bucket"],
        output_key=m["output_key"],
    )


def identity(job: Job) -> str:
    """The job's request identity, comparable with ``JobSpec.identity()``."""
    return JobSpec(job.bucket, job.key, job.version, job.options, job.model,
                   output_bucket=job.output_bucket, output_key=job.output_key).identity()


def refuse_reuse(job: Job, spec: JobSpec, callback_url: str | None) -> None:
    """Raise ``IdempotencyConflict`` when ``spec`` folded into ``job`` (the same key) but is not
    the request that made it. An explicit key compares the whole request (``JobSpec.request``:
    source, options, model, priority or deadline as sent, callback URL) and names what differs;
    a derived key already stands for the source, options and model, and a re-submission that
    differs only in priority or callback folds into the first job by design."""
    if not spec.explicit_key:
        if identity(job) != spec.identity():
            raise IdempotencyConflict(job.id, "idempotency key already used for another request")
        return
    stored = row_request(job.bucket, job.key, job.version, job.options, job.model,
                         job.callback_url, job.request)
    refuse_request(job.id, job.idempotency_key, stored, spec.request(callback_url))


def row_request(bucket: str, key: str, version: str | None, options: Mapping[str, Any],
                model: str, callback_url: str | None,
                request: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The request a job row was made from: its ``request`` column, or, for a job recorded
    before requests were kept, what the row holds (not the priority or deadline as sent)."""
    if request is not None:
        return request
    return {"source": {"bucket": bucket, "key": key, "version": version},
            "options": dict(options), "model": model, "callback_url": callback_url}


def refuse_request(job_id: object, key: str, stored: Mapping[str, Any],
                   sent: Mapping[str, Any]) -> None:
    """``IdempotencyConflict`` naming the fields in which ``sent`` differs from ``stored``."""
    differ = request_differences(stored, sent)
    if differ:
        raise IdempotencyConflict(
            job_id, f"idempotency key {key!r} already used for another request; it differs "
            f"in {', '.join(differ)}", differ)


def event(
    job: Job, action: str, from_status: str | None, now: datetime, *, with_error: bool = True
) -> dict[str, Any]:
    """The event row for a job that just moved; errors are logged only on failing moves."""
    return {
        "job_id": job.id, "at": now, "action": action, "from_status": from_status,
        "to_status": job.status.value, "attempt": job.attempts, "worker": job.leased_by,
        "error_code": job.last_error_code if with_error else None,
        "error_message": job.last_error_message if with_error else None,
    }


def record(conn: Connection, events: list[dict[str, Any]]) -> None:
    if not events:
        return
    full = [{"error_code": None, "error_message": None, **e} for e in events]
    conn.execute(insert(job_events), full)


def prefixed(row: dict[str, Any]) -> dict[str, Any]:
    return {(k if k.startswith("b_") else f"v_{k}"): v for k, v in row.items()}


def by_keys(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Group executemany parameter sets by their key set (each group shares one statement)."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    return list(groups.values())


def take(engine: Engine, chosen: Select[Any], stamp: Update) -> list[Any]:
    """Lock the job rows ``chosen`` selects (its first column is the id), skipping rows other
    transactions hold, and ``stamp`` them in the same transaction; returns what ``stamp``
    returns. Two callers at once get disjoint rows: each skips what the other has locked."""
    with translated(), engine.begin() as conn:
        ids = conn.execute(chosen.with_for_update(skip_locked=True)).scalars().all()
        if not ids:
            return []
        return list(conn.execute(stamp.where(jobs.c.id.in_(ids))).all())
