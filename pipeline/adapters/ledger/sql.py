"""The SQL that moves jobs, on PostgreSQL and SQLite alike.

Each operation is one transaction built on conditional UPDATEs: the WHERE clause states the status
(and, for a lease holder, the token) the caller believes in, and an UPDATE that matched nothing is
a refusal, never a silent overwrite. On PostgreSQL, ``claim_next`` skips rows other workers are
locking (``FOR UPDATE SKIP LOCKED``); on SQLite every transaction takes the write lock at BEGIN,
which serialises writers instead.

The time is the ledger clock's (a port), so every worker host needs a synchronised clock (NTP).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from pipeline import logs
from pipeline.adapters.ledger import bulk_insert
from pipeline.adapters.ledger.batches import LedgerBatches
from pipeline.adapters.ledger.callbacks import LedgerCallbacks
from pipeline.adapters.ledger.database import make_engine, translated
from pipeline.adapters.ledger.publish import LedgerPublishing
from pipeline.adapters.ledger.queries import LedgerQueries
from pipeline.adapters.ledger.rows import (
    by_keys,
    event,
    prefixed,
    record,
    refuse_reuse,
    to_job,
)
from pipeline.adapters.ledger.schema import batches, jobs, status_is, tenants
from pipeline.adapters.ledger.statements import LEASE_CLEARED, Move, Statements
from pipeline.clock import SystemClock
from pipeline.errors import ClipError
from pipeline.jobs import (
    DEFAULT_TENANT,
    LEASE_EXPIRED,
    LEASE_EXPIRED_MESSAGE,
    BulkResult,
    Claim,
    Job,
    JobSpec,
    JobStatus,
    ReapResult,
    SubmitResult,
    new_id,
)
from pipeline.ports import Clock
from pipeline.retry import Backoff, due
from pipeline.settings import Settings

Q, R = JobStatus.QUEUED.value, JobStatus.RUNNING.value
log = logs.get(__name__)


class SqlLedger(LedgerQueries, LedgerPublishing, LedgerCallbacks, LedgerBatches):
    """The job ledger. Thread-safe; build one per process (it owns a connection pool)."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock | None = None,
        lease_seconds: float = 120.0,
        max_attempts: int = 5,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self._pg = engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if self._pg else sqlite.insert
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sql = Statements(pg=self._pg)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock | None = None) -> SqlLedger:
        engine = make_engine(
            settings.ledger_url,
            pool_size=settings.db_pool_size,
            pool_timeout=settings.db_pool_timeout_seconds,
            statement_timeout=settings.db_statement_timeout_seconds,
        )
        return cls(
            engine,
            clock=clock,
            lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts,
            backoff=Backoff(settings.backoff_base_seconds, settings.backoff_max_seconds,
                            outage_budget=settings.outage_budget_seconds,
                            outage_cap=settings.outage_retry_max_seconds),
        )

    def close(self) -> None:
        self.engine.dispose()

    # -- intake -----------------------------------------------------------------------------

    def ensure_tenant(self, tenant_id: str, name: str | None = None) -> None:
        stmt = self._insert(tenants).values(id=tenant_id, name=name or tenant_id)
        with translated(), self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))

    def create_batch(
        self,
        tenant: str = DEFAULT_TENANT,
        *,
        label: str | None = None,
        meta: Mapping[str, Any] | None = None,
        batch_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Create a batch; with an explicit ``batch_id`` that already exists, reuse it."""
        batch_id = batch_id or new_id()
        values = {"id": batch_id, "tenant_id": tenant, "label": label, "meta": meta}
        stmt = self._insert(batches).values(created_at=self.clock.now(), **values)
        with translated(), self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_nothing(index_elements=["id"]))
        return batch_id

    def _row(self, spec: JobSpec, tenant: str, batch_id: uuid.UUID | None, now: datetime,
             max_attempts: int | None, callback_url: str | None = None) -> dict[str, Any]:
        return {
            "id": new_id(), "tenant_id": tenant, "batch_id": batch_id,
            "source_bucket": spec.bucket, "source_key": spec.key, "source_version": spec.version,
            "options": dict(spec.options), "model": spec.model,
            "idempotency_key": spec.dedupe_key(), "priority": spec.priority, "status": Q,
            "attempts": 0, "max_attempts": max_attempts or self.max_attempts, "not_before": now,
            "created_at": now, "updated_at": now, "published_at": now,
            "request": spec.request(callback_url) if spec.explicit_key else None,
            "output_bucket": spec.output_bucket, "output_key": spec.output_key,
            **callback(callback_url, now),
        }

    def _txid(self, conn: Connection) -> dict[str, Any]:
        """The ``txid`` of rows this transaction inserts: PostgreSQL fills it in itself; SQLite,
        whose writers take turns (``BEGIN IMMEDIATE``), takes the next number."""
        if self._pg:
            return {}
        last = conn.execute(select(func.max(jobs.c.txid))).scalar()
        return {"txid": (last or 0) + 1}

    def submit(
        self,
        spec: JobSpec,
        *,
        tenant: str = DEFAULT_TENANT,
        batch_id: uuid.UUID | None = None,
        max_attempts: int | None = None,
        callback_url: str | None = None,
    ) -> SubmitResult:
        """Create the job, or return the existing one with the same idempotency key.

        An explicit key reused for a request that differs in anything (source, options, model,
        priority or deadline, callback URL) is refused with ``IdempotencyConflict`` naming the
        differences, rather than answered with a job the caller did not ask for.
        """
        row = self._row(spec, tenant, batch_id, self.clock.now(), max_attempts, callback_url)
        with translated(), self.engine.begin() as conn:
            stmt = (
                self._insert(jobs)
                .values(**row, **self._txid(conn))
                .on_conflict_do_nothing(index_elements=["tenant_id", "idempotency_key"])
                .returning(*jobs.c)
            )
            created = conn.execute(stmt).first()
            if created is not None:
                return SubmitResult(to_job(created), created=True)
            existing = conn.execute(
                select(jobs).where(
                    jobs.c.tenant_id == tenant, jobs.c.idempotency_key == row["idempotency_key"]
                )
            ).one()
        job = to_job(existing)
        refuse_reuse(job, spec, callback_url)
        return SubmitResult(job, created=False)

    def submit_many(
        self,
        specs: Iterable[JobSpec],
        *,
        tenant: str = DEFAULT_TENANT,
        batch_id: uuid.UUID | None = None,
        max_attempts: int | None = None,
        callback_url: str | None = None,
    ) -> BulkResult:
        """Insert many jobs in one transaction; duplicates (in the input or already stored) fold.
        A line with an explicit idempotency key that matches a job made from another request
        (``JobSpec.request``) refuses the whole call with ``IdempotencyConflict``.

        PostgreSQL streams the rows with COPY into a temporary table and inserts from there;
        SQLite uses executemany. Memory stays bounded by a chunk, whatever the input's length.
        """
        now = self.clock.now()
        constants = {
            "tenant_id": tenant, "batch_id": batch_id, "status": Q, "attempts": 0,
            "max_attempts": max_attempts or self.max_attempts, "not_before": now,
            "created_at": now, "updated_at": now, "published_at": now,
            **callback(callback_url, now),
        }
        with translated(), self.engine.begin() as conn:
            constants.update(self._txid(conn))
            received, inserted = bulk_insert.insert_jobs(conn, specs, constants)
        return BulkResult(batch_id=batch_id, received=received, inserted=inserted)

    # -- work -------------------------------------------------------------------------------

    def _lease_params(self, worker: str, now: datetime) -> dict[str, Any]:
        return {"p_now": now, "p_expires": now + self.lease, "p_worker": worker,
                "p_new_token": uuid.uuid4()}

    def claim(self, job_id: uuid.UUID, *, worker: str) -> Claim | None:
        """Lease one queued, due job; ``None`` when it is not claimable (running, done, early)."""
        now = self.clock.now()
        params = {"p_job_id": job_id, **self._lease_params(worker, now)}
        with translated(), self._atomic() as conn:
            claims = _claims(self._run(conn, self._sql.claim, params, now))
        return claims[0] if claims else None

    def claim_next(
        self, limit: int, *, worker: str, batch_id: uuid.UUID | None = None
    ) -> list[Claim]:
        """Lease up to ``limit`` due queued jobs (of one batch, if given), highest priority
        first, oldest first. Every job leased by one call shares one lease token."""
        now = self.clock.now()
        due, move = self._sql.claim_next(batch=batch_id is not None)
        params = {"p_limit": limit, "p_batch": batch_id, **self._lease_params(worker, now)}
        with translated(), self._atomic() as conn:
            if not self._pg:
                ids = conn.execute(due, params).scalars().all()
                if not ids:
                    return []
                params["p_ids"] = ids
            return _claims(self._run(conn, move, params, now))

    def heartbeat(self, job_id: uuid.UUID, token: uuid.UUID) -> datetime:
        """Extend the lease; ``LeaseLost`` when the token is no longer the job's."""
        now = self.clock.now()
        params = {"p_job_id": job_id, "p_token": token, "p_now": now,
                  "p_expires": now + self.lease}
        with translated(), self._atomic() as conn:
            expires = conn.execute(self._sql.heartbeat, params).scalar()
            if expires is None:
                self._refuse(conn, job_id, "heartbeat with a stale lease token")
        return expires  # type: ignore[no-any-return]

    def complete(self, job_id: uuid.UUID, token: uuid.UUID, result: Mapping[str, Any]) -> Job:
        """Record success. Only the current lease holder can: a stale token raises ``LeaseLost``."""
        now = self.clock.now()
        params = {"p_job_id": job_id, "p_token": token, "p_now": now, "p_result": dict(result)}
        with translated(), self._atomic() as conn:
            rows = self._run(conn, self._sql.complete, params, now)
            if not rows:
                self._refuse(conn, job_id, "completion with a stale lease token")
        return to_job(rows[0])

    @contextmanager
    def _atomic(self) -> Iterator[Connection]:
        """A connection for an operation whose writes are ONE statement.

        On PostgreSQL that statement is atomic by itself, so it runs in autocommit: one round
        trip instead of BEGIN, statement, COMMIT. SQLite gets its usual immediate transaction.
        """
        if self._pg:
            with self._autocommit.connect() as conn:
                yield conn
        else:
            with self.engine.begin() as conn:
                yield conn

    def _run(
        self, conn: Connection, move: Move, params: Mapping[str, Any], now: datetime
    ) -> list[Any]:
        """Run a prepared job move; log its events unless the statement already did."""
        rows = list(conn.execute(move.statement, params).all())
        if not move.logs_itself:
            record(conn, [event(to_job(r), move.action, move.from_status, now,
                                with_error=move.with_error) for r in rows])
        return rows

    def fail(self, job_id: uuid.UUID, token: uuid.UUID, error: ClipError) -> Job:
        """Record a failed attempt, as ``Backoff.after_failure`` decides: queued after a delay,
        or dead with the error's reason code (an outage gives its attempt back)."""
        now = self.clock.now()
        with translated(), self.engine.begin() as conn:
            held = conn.execute(
                select(jobs.c.attempts, jobs.c.max_attempts, jobs.c.outage_since)
                .where(jobs.c.id == job_id, jobs.c.lease_token == token, jobs.c.status == R)
                .with_for_update()
            ).first()
            if held is None:
                self._refuse(conn, job_id, "failure reported with a stale lease token")
            values = self._failure_values(held, error.transient, error.outage, error.reason,
                                          error.message, now)
            row = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.lease_token == token)
                .values(**values)
                .returning(*jobs.c)
            ).one()
            job = to_job(row)
            # The event names the attempt that failed, even when an outage gave it back.
            record(conn, [{**event(job, "failed", R, now), "attempt": held.attempts}])
        _log_failure(job)
        return job

    def _failure_values(self, held: Any, transient: bool, outage: bool, code: str,
                        message: str, now: datetime) -> dict[str, Any]:
        """The columns of a failed attempt; ``held``: the row's attempts, max_attempts and
        outage_since."""
        verdict = self.backoff.after_failure(
            transient=transient, outage=outage, attempts=held.attempts,
            max_attempts=held.max_attempts, outage_since=held.outage_since, now=now,
            rng=self._rng)
        common = {
            "last_error_code": code, "last_error_message": verdict.explained(message)[:2000],
            "updated_at": now, "attempts": verdict.attempts,
            "outage_since": verdict.outage_since, **LEASE_CLEARED,
        }
        if verdict.retry:
            return {"status": Q, "not_before": due(now, verdict), **common}
        return {"status": JobStatus.DEAD.value, "finished_at": now, **common}

    def reap(self, limit: int = 1000, *, every_lease: bool = False) -> ReapResult:
        """Take back jobs whose lease expired (their worker died or hung).

        Attempts were counted at claim time, so a job that keeps killing its workers ends
        ``dead`` with reason ``lease_expired`` once its attempts are spent. ``every_lease``
        takes back live leases too: only for a sole owner (an embedded run holding its lock)
        that knows every holder is gone.
        """
        now = self.clock.now()
        running = status_is(JobStatus.RUNNING)
        expired_rule = running if every_lease else and_(running, jobs.c.lease_expires_at < now)
        expired = (
            select(jobs.c.id, jobs.c.lease_token, jobs.c.attempts, jobs.c.max_attempts,
                   jobs.c.outage_since)
            .where(expired_rule)
            .order_by(jobs.c.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with translated(), self.engine.begin() as conn:
            rows = conn.execute(expired).all()
            updates = [
                {"b_id": r.id, "b_token": r.lease_token,
                 **self._failure_values(r, True, False, LEASE_EXPIRED, LEASE_EXPIRED_MESSAGE,
                                        now)}
                for r in rows
            ]
            for group in by_keys(updates):
                stmt = update(jobs).where(
                    jobs.c.id == bindparam("b_id"), jobs.c.lease_token == bindparam("b_token")
                ).values({k: bindparam(f"v_{k}") for k in group[0] if not k.startswith("b_")})
                conn.execute(stmt, [prefixed(u) for u in group])
            record(conn, [
                {"job_id": u["b_id"], "at": now, "action": "reaped", "from_status": R,
                 "to_status": u["status"], "attempt": r.attempts, "worker": None,
                 "error_code": LEASE_EXPIRED, "error_message": LEASE_EXPIRED_MESSAGE}
                for u, r in zip(updates, rows, strict=True)
            ])
        dead = sum(1 for u in updates if u["status"] == JobStatus.DEAD.value)
        if updates:
            log.warning("leases_reaped", requeued=len(updates) - dead, dead=dead)
        return ReapResult(requeued=len(updates) - dead, dead=dead)

def callback(url: str | None, now: datetime) -> dict[str, Any]:
    """The callback columns of a new job: pending delivery once it finishes, or none."""
    if url is None:
        return {}
    return {"callback_url": url, "callback_state": "pending", "callback_next_at": now}


def _log_failure(job: Job) -> None:
    fields = {"job_id": str(job.id), "attempt": job.attempts, "reason": job.last_error_code,
              "batch_id": str(job.batch_id) if job.batch_id else None}
    if job.status is JobStatus.DEAD:
        log.warning("job_dead_lettered", message=job.last_error_message, **fields)
    else:  # a failure that will be retried is not an error
        log.info("job_retry_scheduled", not_before=job.not_before.isoformat(), **fields)


def _claims(rows: Sequence[Any]) -> list[Claim]:
    # RETURNING promises no order: hand claims out in the order they were chosen.
    ordered = sorted(map(to_job, rows), key=lambda j: (-j.priority, j.not_before, j.id))
    return [Claim(j, j.lease_token, j.lease_expires_at) for j in ordered]  # type: ignore[arg-type]
