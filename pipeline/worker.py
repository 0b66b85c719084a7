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
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from pipeline import logs, metrics
from pipeline.errors import ClipError, LeaseLost, UnexpectedError
from pipeline.heartbeat import Heartbeats
from pipeline.imaging.decode import DEFAULT_LIMITS, DecodeLimits
from pipeline.jobs import Claim, Dispatch, Job, JobStatus
from pipeline.ports import Clock, JobLedger, ObjectStore, Queue, Segmenter
from pipeline.process import process_job

log = logs.get(__name__)


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD = "dead"
    SKIPPED = "skipped"  # not claimable: a duplicate or stale message
    LEASE_LOST = "lease_lost"  # a newer attempt owns the job now


@dataclass(frozen=True)
class RunnerConfig:
    worker: str
    output_bucket: str
    output_prefix: str = "cutouts"
    limits: DecodeLimits = DEFAULT_LIMITS
    heartbeat_seconds: float = 30.0
    max_countdown_seconds: float = 60.0


# Turns an exception no adapter translated (a time limit of the host, say) into a ClipError.
Translate = Callable[[Exception], ClipError | None]


class JobRunner:
    """Runs job ids to an outcome. Build one per process; ``run`` is thread-safe."""

    def __init__(
        self,
        ledger: JobLedger,
        store: ObjectStore,
        segmenter: Segmenter,
        queue: Queue,
        clock: Clock,
        config: RunnerConfig,
        *,
        translate: Translate | None = None,
    ) -> None:
        self.ledger, self.store, self.segmenter, self.queue = ledger, store, segmenter, queue
        self.clock, self.config = clock, config
        self._translate = translate or (lambda exc: None)
        self._heartbeats = Heartbeats(ledger, config.heartbeat_seconds)

    def run(self, job_id: uuid.UUID) -> Outcome:
        claim = self.ledger.claim(job_id, worker=self.config.worker)
        if claim is None:
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
        try:
            with self._heartbeats.holding(job.id, claim.token):
                result = process_job(job, self.store, self.segmenter,
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
        try:
            self.ledger.complete(job.id, claim.token, result)
        except LeaseLost:
            log.warning("job_lease_lost", stage="complete")
            metrics.job_finished(Outcome.LEASE_LOST, None, {})
            return Outcome.LEASE_LOST
        log.info("job_succeeded", timings_ms=result.get("timings_ms"))
        metrics.job_finished(Outcome.SUCCEEDED, None, result.get("timings_ms", {}))
        return Outcome.SUCCEEDED

    def _failed(self, claim: Claim, error: ClipError) -> Outcome:
        outcome = self._record_failure(claim, error)
        metrics.job_finished(outcome, error.reason, {})
        return outcome

    def _record_failure(self, claim: Claim, error: ClipError) -> Outcome:
        try:
            job = self.ledger.fail(claim.job.id, claim.token, error)
        except LeaseLost:
            log.warning("job_lease_lost", stage="fail", reason=error.reason)
            return Outcome.LEASE_LOST
        if job.status is JobStatus.DEAD:
            return Outcome.DEAD
        self._republish(job)
        return Outcome.RETRY_SCHEDULED

    def _republish(self, job: Job) -> None:
        delay = max(0.0, (job.not_before - self.clock.now()).total_seconds())
        if delay > self.config.max_countdown_seconds:
            return  # the reconciler publishes it when it is due
        try:
            self.queue.publish([Dispatch(job.id, job.priority, delay)])
            self.ledger.mark_published(job.id, job.not_before)
        except ClipError as exc:  # the retry is recorded: the reconciler will publish it
            log.warning("retry_not_published", reason=exc.reason, message=exc.message)
