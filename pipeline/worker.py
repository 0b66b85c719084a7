"""What a worker does with one job id, whatever delivered it (Celery, a test, a loop).

    claim (lease, attempt + 1) ─► heartbeat while working ─► process_job ─► complete(token)
                                                      └─ error ─► fail(token) ─► retry or dead

The id comes from a message that may be late, duplicated or replayed, so everything is decided by
the ledger: a job that cannot be claimed (running elsewhere, finished, not yet due) is skipped,
and only the holder of the current lease token can record an outcome. A worker that lost its
lease (it hung past the lease, the job was reaped and claimed again) finds out at ``complete``;
its output object went to the same deterministic key, so the newer attempt simply overwrites it.

A transient failure is re-published with a countdown when the backoff is short; a long backoff
is left to the reconciler, so no message sits in the broker past its visibility timeout.

Outages (``pipeline.breaker``): while a dependency is down the runner claims nothing; a job id
that arrives waits for the breaker's probe and, past ``breaker_wait_seconds``, goes back to the
broker unclaimed (``DEFERRED``). A database that blinks at ``claim`` defers the message the
same way; at ``complete`` or ``fail`` the write is retried in place (the output is already
written), for up to ``ledger_retry_seconds``; the lease token keeps a late write harmless.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from pipeline import logs, metrics
from pipeline.breaker import Breakers
from pipeline.errors import ClipError, LeaseLost, TransientError, UnexpectedError
from pipeline.heartbeat import Heartbeats
from pipeline.imaging.decode import DEFAULT_LIMITS, DecodeLimits
from pipeline.jobs import Claim, Dispatch, Job, JobStatus
from pipeline.ports import Clock, JobLedger, ObjectStore, Queue, Segmenters
from pipeline.process import process_job

log = logs.get(__name__)


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD = "dead"
    SKIPPED = "skipped"  # not claimable: a duplicate or stale message
    LEASE_LOST = "lease_lost"  # a newer attempt owns the job now
    DEFERRED = "deferred"  # not claimed (a dependency is down): its message went back


@dataclass(frozen=True)
class RunnerConfig:
    worker: str
    output_bucket: str
    output_prefix: str = "cutouts"
    limits: DecodeLimits = DEFAULT_LIMITS
    heartbeat_seconds: float = 30.0
    max_countdown_seconds: float = 60.0
    breaker_threshold: int = 3
    breaker_probe_seconds: float = 5.0
    breaker_wait_seconds: float = 30.0
    ledger_retry_seconds: float = 60.0


# Turns an exception no adapter translated (a time limit of the host, say) into a ClipError.
Translate = Callable[[Exception], ClipError | None]


class JobRunner:
    """Runs job ids to an outcome with the job's model among ``segmenters`` (one that is not
    served: dead with ``model_not_served``). Build one per process; ``run`` is thread-safe."""

    def __init__(
        self,
        ledger: JobLedger,
        store: ObjectStore,
        segmenters: Segmenters,
        queue: Queue,
        clock: Clock,
        config: RunnerConfig,
        *,
        translate: Translate | None = None,
    ) -> None:
        self.ledger, self.store, self.segmenters, self.queue = ledger, store, segmenters, queue
        self.clock, self.config = clock, config
        self._translate = translate or (lambda exc: None)
        self._heartbeats = Heartbeats(ledger, config.heartbeat_seconds)
        self.breakers = Breakers(config.breaker_threshold, config.breaker_probe_seconds)

    def run(self, job_id: uuid.UUID, priority: int = 0) -> Outcome:
        """Run one job id to an outcome; ``priority`` routes its message if it is deferred."""
        if not self.breakers.acquire(self.config.breaker_wait_seconds):
            return self._defer(job_id, priority, "circuit_open")
        try:
            claim = self.ledger.claim(job_id, worker=self.config.worker)
        except ClipError as exc:  # the database is down: the job is untouched, its message back
            self.breakers.failed(exc)
            return self._defer(job_id, priority, exc.reason)
        if claim is None:
            self.breakers.release_probe()
            log.debug("job_skipped", job_id=str(job_id))
            metrics.job_finished(Outcome.SKIPPED, None, {})
            return Outcome.SKIPPED
        job = claim.job
        logs.bind(job_id=str(job.id), tenant=job.tenant_id, attempt=job.attempts,
                  batch_id=str(job.batch_id) if job.batch_id else None)
        try:
            return self._work(claim)
        finally:
            logs.clear()

    def _work(self, claim: Claim) -> Outcome:
        job, cfg = claim.job, self.config
        with self._heartbeats.holding(job.id, claim.token):
            try:
                result = process_job(job, self.store, self.segmenters,
                                     output_bucket=cfg.output_bucket, limits=cfg.limits,
                                     prefix=cfg.output_prefix)
            except ClipError as exc:
                return self._failed(claim, exc)
            except Exception as exc:
                error = self._translate(exc)
                if error is None:
                    log.exception("job_unexpected_error")
                    error = UnexpectedError(f"{type(exc).__name__}: {exc}")
                return self._failed(claim, error)
            self.breakers.succeeded()
            try:
                self._in_place(lambda: self.ledger.complete(job.id, claim.token, result))
            except LeaseLost:
                log.warning("job_lease_lost", stage="complete")
                metrics.job_finished(Outcome.LEASE_LOST, None, {})
                return Outcome.LEASE_LOST
        log.info("job_succeeded", timings_ms=result.get("timings_ms"))
        metrics.job_finished(Outcome.SUCCEEDED, None, result.get("timings_ms", {}))
        return Outcome.SUCCEEDED

    def _failed(self, claim: Claim, error: ClipError) -> Outcome:
        self.breakers.failed(error)
        outcome = self._record_failure(claim, error)
        metrics.job_finished(outcome, error.reason, {})
        return outcome

    def _record_failure(self, claim: Claim, error: ClipError) -> Outcome:
        try:
            job = self._in_place(lambda: self.ledger.fail(claim.job.id, claim.token, error))
        except LeaseLost:
            log.warning("job_lease_lost", stage="fail", reason=error.reason)
            return Outcome.LEASE_LOST
        if job.status is JobStatus.DEAD:
            return Outcome.DEAD
        self._republish(job)
        return Outcome.RETRY_SCHEDULED

    def _in_place(self, write: Callable[[], Job]) -> Job:
        """A ledger write after the work is done, retried while the database is unavailable
        (0.25 s doubling to 5 s) for up to ``ledger_retry_seconds``; then the last error."""
        deadline, pause = time.monotonic() + self.config.ledger_retry_seconds, 0.25
        while True:
            try:
                return write()
            except TransientError as exc:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("ledger_write_retried", reason=exc.reason, message=exc.message,
                            pause_s=pause)
                time.sleep(pause)
                pause = min(5.0, pause * 2)

    def _defer(self, job_id: uuid.UUID, priority: int, why: str) -> Outcome:
        """Send the job id back to the broker unclaimed, to come back after a probe's wait."""
        log.warning("job_deferred", job_id=str(job_id), why=why,
                    open_circuits=self.breakers.open_ones())
        metrics.job_finished(Outcome.DEFERRED, why, {})
        delay = self.config.breaker_probe_seconds
        try:
            self.queue.publish([Dispatch(job_id, priority, delay)])
            # Stamped like a retry's countdown, so the reconciler does not count it lost.
            self.ledger.mark_published(job_id, self.clock.now() + timedelta(seconds=delay))
        except ClipError as exc:  # the job is queued in the ledger: the reconciler sends it
            log.warning("deferral_not_published", reason=exc.reason, message=exc.message)
        return Outcome.DEFERRED

    def _republish(self, job: Job) -> None:
        delay = max(0.0, (job.not_before - self.clock.now()).total_seconds())
        if delay > self.config.max_countdown_seconds:
            return  # the reconciler publishes it when it is due
        try:
            self.queue.publish([Dispatch(job.id, job.priority, delay)])
            self.ledger.mark_published(job.id, job.not_before)
        except ClipError as exc:  # the retry is recorded: the reconciler will publish it
            log.warning("retry_not_published", reason=exc.reason, message=exc.message)
