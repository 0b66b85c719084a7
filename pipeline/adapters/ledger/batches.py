"""The reconciler's view of batches: those the API has not finished (``pipeline.batches``) and
those whose results manifest is due (``pipeline.batch_report``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Exists, func, or_, select, update

from pipeline.adapters.ledger.database import translated
from pipeline.adapters.ledger.rows import to_job
from pipeline.adapters.ledger.schema import batches, jobs
from pipeline.batches import EXPANDING, PUBLISHING, READY, Unsettled
from pipeline.jobs import Job, JobStatus
from pipeline.ports import Clock

LIVE = [JobStatus.QUEUED.value, JobStatus.RUNNING.value]


def _live() -> Exists:
    """Some job of the batch is not final yet."""
    return select(jobs.c.id).where(jobs.c.batch_id == batches.c.id,
                                   jobs.c.status.in_(LIVE)).exists()


class LedgerBatches:
    engine: Engine
    clock: Clock

    def batches_to_report(self, limit: int) -> list[tuple[uuid.UUID, str]]:
        """(id, tenant) of finished batches whose report is due, oldest first: expansion done
        (state ``ready``, or none), at least one job, every job final, no report since."""
        state = batches.c.meta["state"].as_string()
        has_jobs = select(jobs.c.id).where(jobs.c.batch_id == batches.c.id).exists()
        query = (select(batches.c.id, batches.c.tenant_id)
                 .where(batches.c.reported_at.is_(None), or_(state.is_(None), state == READY),
                        has_jobs, ~_live())
                 .order_by(batches.c.created_at).limit(limit))
        with translated(), self.engine.connect() as conn:
            return [(row.id, row.tenant_id) for row in conn.execute(query)]

    def batch_jobs(self, batch_id: uuid.UUID) -> Iterator[Job]:
        """Every job of the batch, in listing order."""
        query = (select(jobs).where(jobs.c.batch_id == batch_id)
                 .order_by(jobs.c.txid, jobs.c.id))
        with translated(), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return map(to_job, rows)

    def report_due(self, batch_id: uuid.UUID) -> None:
        """The batch's report is due again once it finishes (jobs were added to it)."""
        with translated(), self.engine.begin() as conn:
            conn.execute(update(batches).where(batches.c.id == batch_id)
                         .values(reported_at=None))

    def mark_reported(self, batch_id: uuid.UUID, report: Mapping[str, Any]) -> bool:
        """Record the report in the batch's meta and stamp ``reported_at``, unless a job of the
        batch went back to the queue meanwhile (a redrive): then it stays due."""
        now = self.clock.now()
        with translated(), self.engine.begin() as conn:
            row = conn.execute(select(batches.c.meta, batches.c.callback_url)
                               .where(batches.c.id == batch_id).with_for_update()).first()
            if row is None:
                return False
            meta = {**(row.meta or {}), "report": {**report, "written_at": now.isoformat()}}
            announce = ({"callback_state": "pending", "callback_next_at": now,
                         "callback_attempts": 0, "callback_error": None}
                        if row.callback_url else {})
            done = conn.execute(update(batches)
                                .where(batches.c.id == batch_id, ~_live())
                                .values(meta=meta, reported_at=now, **announce))
        return bool(done.rowcount)

    # -- the batch's own callback, once its report is written (pipeline.batch_callbacks) -----

    def set_batch_callback(self, batch_id: uuid.UUID, url: str | None) -> None:
        with translated(), self.engine.begin() as conn:
            conn.execute(update(batches).where(batches.c.id == batch_id)
                         .values(callback_url=url))

    def due_batch_callbacks(self, limit: int, *,
                            hold_seconds: float = 60.0) -> list[dict[str, Any]]:
        """Batches whose report callback is due, held for ``hold_seconds`` so that another
        dispatcher does not send them meanwhile; each as its row."""
        now = self.clock.now()
        chosen = (select(batches.c.id)
                  .where(batches.c.callback_state == "pending",
                         batches.c.callback_next_at <= now)
                  .order_by(batches.c.callback_next_at).limit(limit)
                  .with_for_update(skip_locked=True))
        with translated(), self.engine.begin() as conn:
            ids = conn.execute(chosen).scalars().all()
            if not ids:
                return []
            rows = conn.execute(update(batches).where(batches.c.id.in_(ids))
                                .values(callback_next_at=now + timedelta(seconds=hold_seconds))
                                .returning(*batches.c)).all()
        return [dict(r._mapping) for r in rows]

    def batch_callback_result(self, batch_id: uuid.UUID, *, error: str | None,
                              retry_at: datetime | None = None) -> None:
        """One delivery attempt: delivered (no error), to retry at ``retry_at``, or failed."""
        state = "delivered" if error is None else ("pending" if retry_at else "failed")
        with translated(), self.engine.begin() as conn:
            conn.execute(update(batches).where(batches.c.id == batch_id).values(
                callback_state=state, callback_error=error, callback_next_at=retry_at,
                callback_attempts=batches.c.callback_attempts + 1))

    def unsettled_batches(self, created_before: datetime) -> list[Unsettled]:
        """Batches still ``expanding`` or ``publishing`` that were created before
        ``created_before``, with their job counts. A small scan: batches are few, and only
        the API's carry a state."""
        state = batches.c.meta["state"].as_string()
        count = (select(func.count()).where(jobs.c.batch_id == batches.c.id)
                 .scalar_subquery())
        query = (select(batches.c.id, batches.c.meta, count)
                 .where(state.in_([EXPANDING, PUBLISHING]),
                        batches.c.created_at < created_before)
                 .order_by(batches.c.created_at))
        with translated(), self.engine.connect() as conn:
            return [Unsettled(row.id, dict(row.meta or {}), int(row[2]))
                    for row in conn.execute(query)]

    def settle_batch(self, batch_id: uuid.UUID, meta: Mapping[str, Any]) -> bool:
        """Write ``meta`` only if the batch is still ``expanding`` or ``publishing``: a final
        state the API wrote meanwhile (a refusal naming its line, say) is never overwritten."""
        state = batches.c.meta["state"].as_string()
        stmt = (update(batches).where(batches.c.id == batch_id,
                                      state.in_([EXPANDING, PUBLISHING]))
                .values(meta=dict(meta)))
        with translated(), self.engine.begin() as conn:
            return bool(conn.execute(stmt).rowcount)
