"""An in-memory ledger with the same behaviour as ``SqlLedger``, for unit tests of the layers
above it. The contract suite (tests/contract) holds both to the same rules.

Listings go in insertion order: every insert takes the next number (its ``txid``), and with
one lock around every write no insert is ever in progress while a page is read."""

from __future__ import annotations

import itertools
import random
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from pipeline import paging
from pipeline.adapters.ledger.rows import JobEvent, refuse_reuse
from pipeline.clock import SystemClock
from pipeline.errors import (
    ClipError,
    JobNotFound,
    LeaseLost,
    TransitionRefused,
)
from pipeline.jobs import (
    DEFAULT_TENANT,
    LEASE_EXPIRED,
    LEASE_EXPIRED_MESSAGE,
    BatchCounts,
    BulkResult,
    Claim,
    Dispatch,
    Job,
    JobSpec,
    JobStatus,
    ReapResult,
    SubmitResult,
    new_id,
)
from pipeline.ports import Clock
from pipeline.retry import Backoff, due

Q, R, D = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DEAD


class MemoryLedger:
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        lease_seconds: float = 120.0,
        max_attempts: int = 5,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.clock = clock or SystemClock()
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self._rng = rng or random.Random()
        self._lock = threading.RLock()
        self._jobs: dict[uuid.UUID, Job] = {}
        self._keys: dict[tuple[str, str], uuid.UUID] = {}
        self._events: dict[uuid.UUID, list[JobEvent]] = {}
        self._tenants = {DEFAULT_TENANT}
        self._txids = itertools.count(1)
        self._txid: dict[uuid.UUID, int] = {}

    def close(self) -> None:
        pass

    # -- intake -----------------------------------------------------------------------------

    def ensure_tenant(self, tenant_id: str, name: str | None = None) -> None:
        self._tenants.add(tenant_id)

    def create_batch(
        self, tenant: str = DEFAULT_TENANT, *, label: str | None = None,
        meta: Mapping[str, Any] | None = None, batch_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        return batch_id or new_id()

    def _insert(self, spec: JobSpec, tenant: str, batch_id: uuid.UUID | None,
                max_attempts: int | None, callback_url: str | None = None) -> tuple[Job, bool]:
        key = (tenant, spec.dedupe_key())
        if key in self._keys:
            return self._jobs[self._keys[key]], False
        now = self.clock.now()
        job = Job(
            id=new_id(), tenant_id=tenant, batch_id=batch_id, bucket=spec.bucket, key=spec.key,
            version=spec.version, options=dict(spec.options), model=spec.model,
            idempotency_key=key[1], priority=spec.priority, status=Q, attempts=0,
            max_attempts=max_attempts or self.max_attempts, not_before=now, lease_token=None,
            lease_expires_at=None, leased_by=None, last_error_code=None,
            last_error_message=None, result=None, created_at=now, updated_at=now,
            finished_at=None, published_at=now, callback_url=callback_url,
            callback_state="pending" if callback_url else None,
            callback_next_at=now if callback_url else None,
            request=spec.request(callback_url) if spec.explicit_key else None,
            output_bucket=spec.output_bucket, output_key=spec.output_key,
        )
        self._jobs[job.id], self._keys[key], self._events[job.id] = job, job.id, []
        self._txid[job.id] = next(self._txids)
        return job, True

    def submit(self, spec: JobSpec, *, tenant: str = DEFAULT_TENANT,
               batch_id: uuid.UUID | None = None, max_attempts: int | None = None,
               callback_url: str | None = None) -> SubmitResult:
        with self._lock:
            job, created = self._insert(spec, tenant, batch_id, max_attempts, callback_url)
        if not created:
            refuse_reuse(job, spec, callback_url)
        return SubmitResult(job, created)

    def submit_many(self, specs: Iterable[JobSpec], *, tenant: str = DEFAULT_TENANT,
                    batch_id: uuid.UUID | None = None,
                    max_attempts: int | None = None,
                    callback_url: str | None = None) -> BulkResult:
        received = inserted = 0
        with self._lock:
            keys = dict(self._keys)
            try:
                for spec in specs:
                    received += 1
                    job, created = self._insert(spec, tenant, batch_id, max_attempts,
                                                callback_url)
                    inserted += created
                    if not created and spec.explicit_key:
                        refuse_reuse(job, spec, callback_url)
            except BaseException:  # one transaction: nothing of a refused call stays
                for job_id in (self._keys[k] for k in self._keys.keys() - keys.keys()):
                    del self._jobs[job_id], self._events[job_id], self._txid[job_id]
                self._keys = keys
                raise
        return BulkResult(batch_id, received, inserted)

    # -- work -------------------------------------------------------------------------------

    def _lease(self, job: Job, worker: str) -> Claim:
        now = self.clock.now()
        held = replace(job, status=R, lease_token=uuid.uuid4(), lease_expires_at=now + self.lease,
                       leased_by=worker, attempts=job.attempts + 1, updated_at=now)
        self._put(held, "claimed", job.status)
        return Claim(held, held.lease_token, held.lease_expires_at)  # type: ignore[arg-type]

    def _due(self, job: Job) -> bool:
        return job.status is Q and job.not_before <= self.clock.now()

    def claim(self, job_id: uuid.UUID, *, worker: str) -> Claim | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return self._lease(job, worker) if job and self._due(job) else None

    def claim_next(
        self, limit: int, *, worker: str, batch_id: uuid.UUID | None = None
    ) -> list[Claim]:
        with self._lock:
            due = sorted(
                (j for j in self._jobs.values()
                 if self._due(j) and (batch_id is None or j.batch_id == batch_id)),
                key=lambda j: (-j.priority, j.not_before, j.id),
            )
            return [self._lease(j, worker) for j in due[:limit]]

    def _held(self, job_id: uuid.UUID, token: uuid.UUID, what: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id, "no such job")
        if job.status is not R or job.lease_token != token:
            raise LeaseLost(job_id, f"{what} with a stale lease token (job is {job.status})")
        return job

    def heartbeat(self, job_id: uuid.UUID, token: uuid.UUID) -> datetime:
        with self._lock:
            job = self._held(job_id, token, "heartbeat")
            expires = self.clock.now() + self.lease
            self._jobs[job_id] = replace(job, lease_expires_at=expires, updated_at=self.clock.now())
            return expires

    def complete(self, job_id: uuid.UUID, token: uuid.UUID, result: Mapping[str, Any]) -> Job:
        with self._lock:
            job = self._held(job_id, token, "completion")
            now = self.clock.now()
            done = replace(job, status=JobStatus.SUCCEEDED, result=dict(result), finished_at=now,
                           updated_at=now, last_error_code=None, last_error_message=None,
                           lease_token=None, lease_expires_at=None, outage_since=None)
            return self._put(done, "completed", R)

    def _failed(self, job: Job, transient: bool, outage: bool, code: str, message: str) -> Job:
        now = self.clock.now()
        verdict = self.backoff.after_failure(
            transient=transient, outage=outage, attempts=job.attempts,
            max_attempts=job.max_attempts, outage_since=job.outage_since, now=now, rng=self._rng)
        common: dict[str, Any] = {"last_error_code": code,
                                  "last_error_message": verdict.explained(message),
                                  "updated_at": now, "lease_token": None, "lease_expires_at": None,
                                  "attempts": verdict.attempts,
                                  "outage_since": verdict.outage_since}
        if verdict.retry:
            return replace(job, status=Q, not_before=due(now, verdict), **common)
        return replace(job, status=D, finished_at=now, **common)

    def fail(self, job_id: uuid.UUID, token: uuid.UUID, error: ClipError) -> Job:
        with self._lock:
            job = self._held(job_id, token, "failure reported")
            failed = self._failed(job, error.transient, error.outage, error.reason, error.message)
            return self._put(failed, "failed", R, attempt=job.attempts)

    def reap(self, limit: int = 1000, *, every_lease: bool = False) -> ReapResult:
        now = self.clock.now()
        requeued = dead = 0
        with self._lock:
            expired = [j for j in self._jobs.values()
                       if j.status is R and j.lease_expires_at
                       and (every_lease or j.lease_expires_at < now)]
            for job in expired[:limit]:
                out = self._failed(job, True, False, LEASE_EXPIRED, LEASE_EXPIRED_MESSAGE)
                self._put(out, "reaped", R)
                dead += out.status is D
                requeued += out.status is Q
        return ReapResult(requeued=requeued, dead=dead)

    # -- wake-up messages (see publish.py) --------------------------------------------------

    def take_unpublished(self, limit: int, *, lost_after: float | None = None) -> list[Dispatch]:
        now = self.clock.now()
        lost_before = now - timedelta(seconds=lost_after) if lost_after is not None else None

        def missing(j: Job) -> bool:
            sent = j.published_at
            return (sent is None or sent < j.not_before
                    or (lost_before is not None and sent < lost_before))

        with self._lock:
            chosen = sorted((j for j in self._jobs.values() if self._due(j) and missing(j)),
                            key=lambda j: (-j.priority, j.not_before, j.id))[:limit]
            for job in chosen:
                self._jobs[job.id] = replace(job, published_at=now)
        return [Dispatch(j.id, j.priority) for j in chosen]

    def mark_published(self, job_id: uuid.UUID, at: datetime) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.status is Q:
                self._jobs[job_id] = replace(job, published_at=at)

    # -- completion callbacks (see callbacks.py) --------------------------------------------

    def due_callbacks(self, limit: int, *, hold_seconds: float = 60.0) -> list[Job]:
        now = self.clock.now()
        finished = (JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED)
        with self._lock:
            due = sorted((j for j in self._jobs.values()
                          if j.callback_state == "pending" and j.status in finished
                          and j.callback_next_at is not None and j.callback_next_at <= now),
                         key=lambda j: j.callback_next_at or now)[:limit]
            held = [replace(j, callback_next_at=now + timedelta(seconds=hold_seconds))
                    for j in due]
            for job in held:
                self._jobs[job.id] = job
        return held

    def callback_result(self, job_id: uuid.UUID, *, error: str | None,
                        retry_at: datetime | None = None) -> None:
        state = "delivered" if error is None else ("pending" if retry_at else "failed")
        with self._lock:
            job = self._jobs[job_id]
            self._jobs[job_id] = replace(job, callback_state=state, callback_next_at=retry_at,
                                         callback_attempts=job.callback_attempts + 1)

    # -- operations -------------------------------------------------------------------------

    def redrive(self, *, tenant: str = DEFAULT_TENANT, ids: Sequence[uuid.UUID] | None = None,
                reason: str | None = None, batch_id: uuid.UUID | None = None) -> int:
        if ids is None and reason is None and batch_id is None:
            raise ValueError("redrive needs ids, a reason or a batch")
        now = self.clock.now()
        moved = 0
        with self._lock:
            for job in list(self._jobs.values()):
                if (job.tenant_id != tenant or job.status is not D
                        or (ids is not None and job.id not in ids)
                        or (reason is not None and job.last_error_code != reason)
                        or (batch_id is not None and job.batch_id != batch_id)):
                    continue
                back = replace(job, status=Q, attempts=0, not_before=now, updated_at=now,
                               finished_at=None, last_error_code=None, last_error_message=None,
                               outage_since=None)
                self._put(back, "redriven", D)
                moved += 1
        return moved

    def cancel(self, job_id: uuid.UUID, *, tenant: str | None = None) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or (tenant is not None and job.tenant_id != tenant):
                raise JobNotFound(job_id, "no such job")
            if job.status not in (Q, R):
                raise TransitionRefused(
                    job_id, f"only queued or running jobs can be cancelled (job is {job.status})")
            now = self.clock.now()
            done = replace(job, status=JobStatus.CANCELLED, finished_at=now, updated_at=now,
                           lease_token=None, lease_expires_at=None)
            return self._put(done, "cancelled", job.status)

    def get(self, job_id: uuid.UUID, *, tenant: str | None = None) -> Job:
        job = self._jobs.get(job_id)
        if job is None or (tenant is not None and job.tenant_id != tenant):
            raise JobNotFound(job_id, "no such job")
        return job

    def list_jobs(
        self, *, tenant: str | None = None, batch_id: uuid.UUID | None = None,
        status: JobStatus | None = None, reason: str | None = None, limit: int = 100,
    ) -> list[Job]:
        return self.page_jobs(tenant=tenant, batch_id=batch_id, status=status, reason=reason,
                              limit=limit).items

    def page_jobs(
        self, *, tenant: str | None = None, batch_id: uuid.UUID | None = None,
        status: JobStatus | None = None, reason: str | None = None, after: str | None = None,
        limit: int = 100,
    ) -> paging.Page:
        wanted = {"tenant_id": tenant, "batch_id": batch_id, "status": status,
                  "last_error_code": reason}

        def beyond(position: paging.Position, n: int) -> list[Job]:
            return [j for j in self._ordered() if self._position(j) > position
                    and all(v is None or getattr(j, k) == v for k, v in wanted.items())][:n]

        with self._lock:  # no insert is ever in progress here: no lanes
            found, cursor = paging.read(paging.decode(after), limit, frozenset(),
                                        lambda *_: [], beyond, self._position)
        return paging.Page(found, paging.encode(cursor))

    def _position(self, job: Job) -> paging.Position:
        return self._txid[job.id], job.id

    def _ordered(self) -> list[Job]:
        return sorted(self._jobs.values(), key=self._position)

    def source_index(self, batch_id: uuid.UUID) -> list[tuple[uuid.UUID, str, str | None,
                                                             JobStatus]]:
        return [(j.id, j.key, j.version, j.status) for j in self._ordered()
                if j.batch_id == batch_id]

    def move_to_batch(self, job_ids: Sequence[uuid.UUID], batch_id: uuid.UUID) -> int:
        moved = 0
        with self._lock:
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is not None:
                    self._put(replace(job, batch_id=batch_id, updated_at=self.clock.now()),
                              "moved", job.status)
                    moved += 1
        return moved

    def events(self, job_id: uuid.UUID) -> list[JobEvent]:
        return list(self._events.get(job_id, []))

    def batch_counts(self, batch_id: uuid.UUID) -> BatchCounts:
        members = [j for j in self._jobs.values() if j.batch_id == batch_id]
        reasons = Counter(j.last_error_code or "unknown" for j in members if j.status is D)
        return BatchCounts(Counter(j.status for j in members), dict(reasons))

    def _put(self, job: Job, action: str, before: JobStatus, *, attempt: int | None = None) -> Job:
        self._jobs[job.id] = job
        worker = None if action in ("reaped", "redriven") else job.leased_by
        failed = action in ("failed", "reaped")
        self._events[job.id].append(JobEvent(
            at=self.clock.now(), action=action, from_status=before.value,
            to_status=job.status.value, attempt=job.attempts if attempt is None else attempt,
            worker=worker,
            error_code=job.last_error_code if failed else None,
            error_message=job.last_error_message if failed else None,
        ))
        return job
