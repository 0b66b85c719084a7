"""``GET /v1/batches``: the tenant's newest batches, each as ``GET /v1/batches/{id}`` shows it.

The review page's list of batches (progress, estimated finish); a client that knows its batch
ids keeps polling ``GET /v1/batches/{id}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from pipeline.adapters.ledger.batch_listing import recent_batch_ids
from pipeline.api.batches import batch_view
from pipeline.api.deps import ApiDeps, deps, tenant
from pipeline.api.schemas import BatchView
from pipeline.tenants import Tenant

router = APIRouter(prefix="/v1", tags=["batches"])
MAX_LISTED = 100


class BatchList(BaseModel):
    items: list[BatchView]


@router.get("/batches", response_model=BatchList)
def list_batches(
    limit: int = Query(default=20, ge=1, le=MAX_LISTED, description="How many, newest first."),
    who: Tenant = Depends(tenant),
    d: ApiDeps = Depends(deps),
) -> BatchList:
    """The tenant's `limit` newest batches, newest first, with their counts by status, dead
    letters by reason, throughput and estimated finish (as `GET /v1/batches/{id}`)."""
    ids = recent_batch_ids(d.ledger, who.id, limit)
    return BatchList(items=[batch_view(d, who, batch_id) for batch_id in ids])
