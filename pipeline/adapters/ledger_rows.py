"""Rows to values and back: how the ledger reads job rows and writes job events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, Update, insert

from pipeline.adapters.database import translated
from pipeline.adapters.schema import job_events, jobs
from pipeline.jobs import Job, JobSpec, JobStatus


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
    )


def identity(job: Job) -> str:
    """The job's request identity, comparable with ``JobSpec.identity()``."""
    return JobSpec(job.bucket, job.key, job.version, job.options, job.model).identity()


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
