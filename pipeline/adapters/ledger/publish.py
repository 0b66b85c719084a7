"""The ledger's side of wake-up messages: which queued jobs have no message on the way.

Redis only wakes workers up; the job row is the truth. ``published_at`` says when a message was
last sent for the job's current wait (or, for a message held back by a countdown, when it is due).
A queued, due job is *unpublished* when no message was sent since it became due: a retry whose
backoff was too long to park in the broker, a reaped lease, a redrive. It is *lost* when its
message went out long ago and nobody claimed it: Redis restarted empty, or a worker died between
popping and acknowledging. The reconciler asks for both and publishes them again.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, or_, select, update

from pipeline.adapters.ledger.database import translated
from pipeline.adapters.ledger.rows import take
from pipeline.adapters.ledger.schema import jobs, status_is
from pipeline.jobs import Dispatch, JobStatus
from pipeline.ports import Clock


class LedgerPublishing:
    engine: Engine
    clock: Clock

    def take_unpublished(self, limit: int, *, lost_after: float | None = None) -> list[Dispatch]:
        """Up to ``limit`` queued, due jobs that need a message, marked as published now.

        With ``lost_after``, jobs whose last message is older than that many seconds count too.
        Rows are taken with ``SKIP LOCKED`` and stamped in the same transaction, so two
        reconcilers running at once hand out disjoint sets.
        """
        now = self.clock.now()
        missing = or_(jobs.c.published_at.is_(None), jobs.c.published_at < jobs.c.not_before)
        if lost_after is not None:
            missing = or_(missing, jobs.c.published_at < now - timedelta(seconds=lost_after))
        chosen = (
            select(jobs.c.id)
            .where(and_(status_is(JobStatus.QUEUED), jobs.c.not_before <= now, missing))
            .order_by(jobs.c.priority.desc(), jobs.c.not_before, jobs.c.id)
            .limit(limit)
        )
        stamp = (update(jobs).where(jobs.c.status == JobStatus.QUEUED.value)
                 .values(published_at=now)
                 .returning(jobs.c.id, jobs.c.priority, jobs.c.not_before))
        rows = sorted(take(self.engine, chosen, stamp),
                      key=lambda r: (-r.priority, r.not_before, r.id))
        return [Dispatch(r.id, r.priority) for r in rows]

    def mark_published(self, job_id: uuid.UUID, at: datetime) -> None:
        """Record a message sent for a queued job (``at``: when a delayed one becomes due)."""
        with translated(), self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == JobStatus.QUEUED.value)
                .values(published_at=at)
            )
