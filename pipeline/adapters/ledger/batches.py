"""Batches that the API has not finished: the reconciler's view of ``pipeline.batches``."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select, update

from pipeline.adapters.ledger.database import translated
from pipeline.adapters.ledger.schema import batches, jobs
from pipeline.batches import EXPANDING, PUBLISHING, Unsettled


class LedgerBatches:
    engine: Engine

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
