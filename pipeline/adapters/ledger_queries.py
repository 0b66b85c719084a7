"""The ledger's operator side: re-drive, cancel, look up, list and count jobs.

A mixin of ``SqlLedger`` (which supplies ``engine`` and ``clock``), kept apart from the hot path
of claiming and finishing jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, and_, func, select, update

from pipeline.adapters.database import translated
from pipeline.adapters.ledger_rows import JobEvent, event, record, to_job
from pipeline.adapters.ledger_statements import LEASE_CLEARED
from pipeline.adapters.schema import batches, job_events, jobs, status_is
from pipeline.errors import BatchNotFound, JobNotFound, LeaseLost, TransitionRefused
from pipeline.jobs import DEFAULT_TENANT, BatchCounts, Job, JobStatus
from pipeline.ports import Clock

Q, R = JobStatus.QUEUED.value, JobStatus.RUNNING.value


class LedgerQueries:
    engine: Engine
    clock: Clock

    def redrive(
        self,
        *,
        tenant: str = DEFAULT_TENANT,
        ids: Sequence[uuid.UUID] | None = None,
        reason: str | None = None,
        batch_id: uuid.UUID | None = None,
    ) -> int:
        """Send dead jobs back to the queue with fresh attempts; returns how many moved.

        At least one selector is required, so a slip cannot re-drive every dead letter.
        """
        if ids is None and reason is None and batch_id is None:
            raise ValueError("redrive needs ids, a reason or a batch")
        conds = [jobs.c.tenant_id == tenant, jobs.c.status == JobStatus.DEAD.value]
        if ids is not None:
            conds.append(jobs.c.id.in_(list(ids)))
        if reason is not None:
            conds.append(jobs.c.last_error_code == reason)
        if batch_id is not None:
            conds.append(jobs.c.batch_id == batch_id)
        now = self.clock.now()
        stmt = (
            update(jobs)
            .where(and_(*conds))
            .values(status=Q, attempts=0, not_before=now, updated_at=now, finished_at=None,
                    last_error_code=None, last_error_message=None)
            .returning(jobs.c.id)
        )
        with translated(), self.engine.begin() as conn:
            moved = conn.execute(stmt).scalars().all()
            record(conn, [
                {"job_id": i, "at": now, "action": "redriven", "from_status": "dead",
                 "to_status": Q, "attempt": 0, "worker": None}
                for i in moved
            ])
        return len(moved)

    def cancel(self, job_id: uuid.UUID, *, tenant: str | None = None) -> Job:
        """Cancel a queued or running job (a running worker's completion is then refused)."""
        now = self.clock.now()
        conds = [jobs.c.id == job_id, jobs.c.status.in_([Q, R])]
        if tenant is not None:
            conds.append(jobs.c.tenant_id == tenant)
        with translated(), self.engine.begin() as conn:
            before = conn.execute(
                select(jobs.c.status).where(*conds).with_for_update()
            ).scalar()
            row = conn.execute(
                update(jobs).where(*conds)
                .values(status=JobStatus.CANCELLED.value, finished_at=now, updated_at=now,
                        **LEASE_CLEARED)
                .returning(*jobs.c)
            ).first()
            if row is None:
                self._refuse(conn, job_id, "only queued or running jobs can be cancelled",
                             tenant=tenant)
            job = to_job(row)
            record(conn, [event(job, "cancelled", before, now, with_error=False)])
        return job

    def get(self, job_id: uuid.UUID, *, tenant: str | None = None) -> Job:
        conds = [jobs.c.id == job_id] + ([jobs.c.tenant_id == tenant] if tenant else [])
        with translated(), self.engine.connect() as conn:
            row = conn.execute(select(jobs).where(*conds)).first()
        if row is None:
            raise JobNotFound(job_id, "no such job")
        return to_job(row)

    def list_jobs(
        self,
        *,
        tenant: str | None = None,
        batch_id: uuid.UUID | None = None,
        status: JobStatus | None = None,
        reason: str | None = None,
        after: uuid.UUID | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs matching every filter given, oldest first; ``after`` is the last id of the
        previous page (ids are time-ordered, so this is a stable cursor)."""
        conds = []
        for column, value in ((jobs.c.tenant_id, tenant), (jobs.c.batch_id, batch_id),
                              (jobs.c.last_error_code, reason)):
            if value is not None:
                conds.append(column == value)
        if status is not None:
            conds.append(status_is(status))
        if after is not None:
            conds.append(jobs.c.id > after)
        query = select(jobs).where(*conds).order_by(jobs.c.id).limit(limit)
        with translated(), self.engine.connect() as conn:
            return [to_job(row) for row in conn.execute(query)]

    def events(self, job_id: uuid.UUID) -> list[JobEvent]:
        cols = [job_events.c[f] for f in JobEvent.__slots__]
        query = select(*cols).where(job_events.c.job_id == job_id).order_by(job_events.c.id)
        with translated(), self.engine.connect() as conn:
            return [JobEvent(*row) for row in conn.execute(query)]

    def batch_counts(self, batch_id: uuid.UUID) -> BatchCounts:
        by_status = (
            select(jobs.c.status, func.count())
            .where(jobs.c.batch_id == batch_id)
            .group_by(jobs.c.status)
        )
        by_reason = (
            select(jobs.c.last_error_code, func.count())
            .where(jobs.c.batch_id == batch_id, jobs.c.status == JobStatus.DEAD.value)
            .group_by(jobs.c.last_error_code)
        )
        with translated(), self.engine.connect() as conn:
            statuses = {JobStatus(s): n for s, n in conn.execute(by_status)}
            reasons = {r or "unknown": n for r, n in conn.execute(by_reason)}
        return BatchCounts(by_status=statuses, dead_by_reason=reasons)

    def source_index(self, batch_id: uuid.UUID) -> list[tuple[uuid.UUID, str, str | None,
                                                             JobStatus]]:
        """(id, key, version, status) of every job of the batch, oldest first: a lean
        ``list_jobs`` for an embedded run to compare its batch with the files it finds."""
        query = (select(jobs.c.id, jobs.c.source_key, jobs.c.source_version, jobs.c.status)
                 .where(jobs.c.batch_id == batch_id).order_by(jobs.c.id))
        with translated(), self.engine.connect() as conn:
            return [(i, k, v, JobStatus(s)) for i, k, v, s in conn.execute(query)]

    def move_to_batch(self, job_ids: Sequence[uuid.UUID], batch_id: uuid.UUID) -> int:
        """Put jobs into another (existing) batch, status unchanged; each move is a job event
        ``moved``. An embedded run files a file's superseded versions apart so that its batch
        holds one job per file. Returns how many moved."""
        now = self.clock.now()
        moved = 0
        with translated(), self.engine.begin() as conn:
            for start in range(0, len(job_ids), 500):
                rows = conn.execute(
                    update(jobs).where(jobs.c.id.in_(list(job_ids[start:start + 500])))
                    .values(batch_id=batch_id, updated_at=now)
                    .returning(jobs.c.id, jobs.c.status, jobs.c.attempts)
                ).all()
                record(conn, [
                    {"job_id": i, "at": now, "action": "moved", "from_status": s,
                     "to_status": s, "attempt": a, "worker": None}
                    for i, s, a in rows
                ])
                moved += len(rows)
        return moved

    def ping(self) -> None:
        """One round trip to the database (readiness checks)."""
        with translated(), self.engine.connect() as conn:
            conn.execute(select(1))

    def get_batch(self, batch_id: uuid.UUID, *, tenant: str | None = None) -> dict[str, Any]:
        """The batch's row (id, tenant_id, label, meta, created_at); ``BatchNotFound`` when it
        does not exist, or belongs to another tenant."""
        conds = [batches.c.id == batch_id] + ([batches.c.tenant_id == tenant] if tenant else [])
        with translated(), self.engine.connect() as conn:
            row = conn.execute(select(batches).where(*conds)).first()
        if row is None:
            raise BatchNotFound(batch_id, "no such batch")
        return dict(row._mapping)

    def set_batch_meta(self, batch_id: uuid.UUID, meta: Mapping[str, Any]) -> None:
        with translated(), self.engine.begin() as conn:
            conn.execute(update(batches).where(batches.c.id == batch_id).values(meta=dict(meta)))

    def completions_since(self, batch_id: uuid.UUID, since: datetime) -> int:
        """Jobs of the batch that reached a final state since ``since`` (for its throughput)."""
        query = (select(func.count()).select_from(job_events.join(jobs))
                 .where(jobs.c.batch_id == batch_id, job_events.c.at >= since,
                        job_events.c.to_status.in_([JobStatus.SUCCEEDED.value,
                                                    JobStatus.DEAD.value])))
        with translated(), self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def _refuse(
        self, conn: Connection, job_id: uuid.UUID, message: str, *, tenant: str | None = None
    ) -> NoReturn:
        """Raise the right refusal: the job is unknown (to this tenant), or its state moved on."""
        conds = [jobs.c.id == job_id] + ([jobs.c.tenant_id == tenant] if tenant else [])
        status = conn.execute(select(jobs.c.status).where(*conds)).scalar()
        if status is None:
            raise JobNotFound(job_id, "no such job")
        if "lease" in message:
            raise LeaseLost(job_id, f"{message} (job is {status})")
        raise TransitionRefused(job_id, f"{message} (job is {status})")
