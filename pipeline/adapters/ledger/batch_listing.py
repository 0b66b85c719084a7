"""A tenant's batches, newest first: what the review page lists (``GET /v1/batches``).

A function over the ledger's engine rather than a ledger method, so the listing stays a read of
its own: it uses the ``batches (tenant_id, created_at)`` index and nothing else.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Engine, select

from pipeline.adapters.ledger.database import translated
from pipeline.adapters.ledger.schema import batches


def recent_batch_ids(ledger: Any, tenant: str, limit: int) -> list[uuid.UUID]:
    """The ids of ``tenant``'s ``limit`` newest batches, newest first.

    ``ledger`` is an ``SqlLedger`` (its ``engine`` is read). The in-memory ledger records no
    batch rows at all (its ``create_batch`` only hands out an id), so it lists none."""
    engine: Engine | None = getattr(ledger, "engine", None)
    if engine is None:
        return []
    query = (select(batches.c.id).where(batches.c.tenant_id == tenant)
             .order_by(batches.c.created_at.desc(), batches.c.id.desc()).limit(limit))
    with translated(), engine.connect() as conn:
        return [row.id for row in conn.execute(query)]
