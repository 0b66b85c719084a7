"""The ledger's operator side: re-drive, cancel, look up, list and count jobs.

A mixin of ``SqlLedger`` (which supplies ``engine`` and ``clock``), kept apart from the hot path
of claiming and finishing jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Select,
    and_,
    func,
    literal,
    select,
    text,
    tuple_,
    update,
)

from pipeline import paging
from pipeline.adapters.ledger.database import translated
from pipeline.adapters.ledger.rows import JobEvent, event, record, to_job
from pipeline.adapters.ledger.schema import batches, job_events, jobs, status_is
from pipeline.adapters.ledger.statements import LEASE_CLEARED
from pipeline.errors import BatchNotFound, JobNotFound, LeaseLost, TransitionRefused
from pipeline.jobs import DEFAULT_TENANT, BatchCounts, Job, JobStatus
from pipeline.paging import Page
from pipeline.ports import Clock

Q, R = JobStatus.QUEUED.value, JobStatus.RUNNING.value
UUID_TYPE = jobs.c.id.type


class LedgerQueries:
    engine: Engine
    clock: Clock
    _pg: bool

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
                    last_error_code=None, last_error_message=None, outage_since=None)
            .returning(jobs.c.id, jobs.c.batch_id)
        )
        with translated(), self.engine.begin() as conn:
            rows = conn.execute(stmt).all()
            moved = [r.id for r in rows]
            record(conn, [
                {"job_id": i, "at": now, "action": "redriven", "from_status": "dead",
                 "to_status": Q, "attempt": 0, "worker": None}
                for i in moved
            ])
            # Their batches' reports are due again once they finish (pipeline.batch_report).
            touched = list({r.batch_id for r in rows if r.batch_id is not None})
            for start in range(0, len(touched), 500):
                conn.execute(update(batches).where(batches.c.id.in_(touched[start:start + 500]))
                             .values(reported_at=None))
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
        limit: int = 100,
    ) -> list[Job]:
        """The first ``limit`` jobs matching every filter given, oldest first; ``page_jobs``
        goes on from there."""
        return self.page_jobs(tenant=tenant, batch_id=batch_id, status=status, reason=reason,
                              limit=limit).items

    def page_jobs(
        self,
        *,
        tenant: str | None = None,
        batch_id: uuid.UUID | None = None,
        status: JobStatus | None = None,
        reason: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> Page:
        """A page of the jobs matching every filter given, in ``(txid, id)`` order (oldest
        first); ``after`` is the previous page's ``next_cursor``. Paged to its end, a listing
        returns every job committed before its last page exactly once (``pipeline.paging``).

        One snapshot serves the page: on PostgreSQL a read-only REPEATABLE READ transaction
        whose first statement reads which writers are still in progress."""
        start = paging.decode(after)
        conds = [column == value for column, value in (
            (jobs.c.tenant_id, tenant), (jobs.c.batch_id, batch_id),
            (jobs.c.last_error_code, reason)) if value is not None]
        if status is not None:
            conds.append(status_is(status))
        with translated(), self._snapshot() as conn:

            def lane(txid: int, last: uuid.UUID | None, n: int) -> Sequence[Any]:
                after_last = [] if last is None else [jobs.c.id > last]
                return conn.execute(_ordered([*conds, jobs.c.txid == txid, *after_last], n)).all()

            def beyond(position: paging.Position, n: int) -> Sequence[Any]:
                txid, job_id = literal(position[0], BigInteger), literal(position[1], UUID_TYPE)
                after_it = tuple_(jobs.c.txid, jobs.c.id) > tuple_(txid, job_id)
                return conn.execute(_ordered([*conds, after_it], n)).all()

            rows, cursor = paging.read(start, limit, self._running(conn), lane, beyond,
                                       lambda r: (r.txid, r.id))
        return Page([to_job(r) for r in rows], paging.encode(cursor))

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A connection whose statements share one snapshot. SQLite's transactions already
        do (and writers take turns there)."""
        if not self._pg:
            with self.engine.connect() as conn:
                yield conn
            return
        with self.engine.connect().execution_options(
            isolation_level="REPEATABLE READ", postgresql_readonly=True
        ) as conn, conn.begin():
            yield conn

    def _running(self, conn: Connection) -> frozenset[int]:
        """The transactions in progress in the connection's snapshot (none on SQLite)."""
        if not self._pg:
            return frozenset()
        found = conn.execute(text(
            "SELECT pg_snapshot_xip(pg_current_snapshot())::text::bigint")).scalars()
        return frozenset(found)

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
                 .where(jobs.c.batch_id == batch_id).order_by(jobs.c.txid, jobs.c.id))
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


def _ordered(conds: list[Any], limit: int) -> Select[Any]:
    return select(jobs).where(*conds).order_by(jobs.c.txid, jobs.c.id).limit(limit)
