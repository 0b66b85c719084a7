"""The ledger's side of completion callbacks: which finished jobs still owe one, and how the
delivery went. The sending is in ``pipeline.callbacks``."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, update

from pipeline.adapters.ledger.database import translated
from pipeline.adapters.ledger.rows import take, to_job
from pipeline.adapters.ledger.schema import jobs
from pipeline.jobs import Job, JobStatus
from pipeline.ports import Clock

FINISHED = [JobStatus.SUCCEEDED.value, JobStatus.DEAD.value, JobStatus.CANCELLED.value]


class LedgerCallbacks:
    engine: Engine
    clock: Clock

    def due_callbacks(self, limit: int, *, hold_seconds: float = 60.0) -> list[Job]:
        """Finished jobs whose callback is due, held for ``hold_seconds`` (their next attempt
        time is pushed back) so that another dispatcher does not send them meanwhile."""
        now = self.clock.now()
        chosen = (
            select(jobs.c.id)
            .where(jobs.c.callback_state == "pending", jobs.c.callback_next_at <= now,
                   jobs.c.status.in_(FINISHED))
            .order_by(jobs.c.callback_next_at)
            .limit(limit)
        )
        hold = (update(jobs).values(callback_next_at=now + timedelta(seconds=hold_seconds))
                .returning(*jobs.c))
        return [to_job(r) for r in take(self.engine, chosen, hold)]

    def callback_result(self, job_id: uuid.UUID, *, error: str | None,
                        retry_at: datetime | None = None) -> None:
        """Record one delivery attempt: delivered (no error), to retry at ``retry_at``, or
        failed for good (an error and no retry time)."""
        state = "delivered" if error is None else ("pending" if retry_at else "failed")
        values = {"callback_state": state, "callback_error": error,
                  "callback_attempts": jobs.c.callback_attempts + 1,
                  "callback_next_at": retry_at}
        with translated(), self.engine.begin() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))
