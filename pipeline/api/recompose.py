"""``POST /v1/jobs/{id}/recompose``: a job's output again, with a chosen set of its parts shown.

No model runs: the source and the job's stored layers mask are read from object storage, the
output is composed and encoded in this process (``pipeline.recompose``, in FastAPI's thread
pool, under the settings' decode limits) and written beside the job's own output, at a key
derived from the set shown (``selection_key``), with the job's provenance metadata.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends

from pipeline import logs
from pipeline.api.deps import ApiDeps, deps, tenant
from pipeline.api.jobs import check_source
from pipeline.api.problems import Problem
from pipeline.api.schemas import Output, RecomposeRequest, RecomposeView, problem_responses
from pipeline.process import options_hash
from pipeline.recompose import (
    layered_file,
    recompose,
    selection_digest,
    selection_key,
    stored_layers,
)
from pipeline.tenants import Tenant

router = APIRouter(prefix="/v1", tags=["jobs"])
log = logs.get(__name__)


@router.post("/jobs/{job_id}/recompose", response_model=RecomposeView,
             responses=problem_responses(403, 404, 409, 422, 503))
def recompose_job(job_id: uuid.UUID, body: RecomposeRequest, who: Tenant = Depends(tenant),
                  d: ApiDeps = Depends(deps)) -> RecomposeView:
    """Write the job's output again showing only the parts `layers` (ids from the job's
    `result.layers`), without running the model. The job must have succeeded
    (`409 job_not_succeeded`) with the option `layers: true` (`409 layers_not_recorded`);
    an id the job does not have is `422 unknown_layer`. The same set always writes the same
    key (`<output key>.layers-<digest>.<ext>`); the answer gives it with a presigned URL, and
    every part with `shown`. With `layered` (`psd` or `ora`) the file is a designer's layered
    file instead, `<output key>.layers-<digest>.psd` or `.ora` (`422 invalid_layers` when its
    layers would not fit in memory)."""
    job = d.ledger.get(job_id, tenant=who.id)
    layers = stored_layers(job)
    if d.store is None:
        raise Problem(503, "storage_unavailable", "Object storage is not configured",
                      "this API process has no object store to read the source from")
    check_source(who, job.bucket, job.key, door="api_recompose", uploads=d.settings.upload_area)
    shown = frozenset(body.layers)
    mask = d.store.get(layers.mask["bucket"], layers.mask["key"])
    source = d.store.get(job.bucket, job.key, version=job.version)
    limits = d.settings.decode_limits
    if body.layered is None:
        cut = recompose(source, mask, layers.options, shown, limits=limits)
    else:
        cut = layered_file(body.layered, source, mask, layers.parts, shown=shown, limits=limits)
    out = (job.result or {})["output"]
    key = selection_key(out["key"], shown, extension=cut.extension)
    d.store.put(out["bucket"], key, cut.data, content_type=cut.content_type, metadata={
        "job-id": str(job.id), "model": job.model,
        "options-hash": options_hash(layers.options, job.model),
        "layers-shown": selection_digest(shown)})
    log.info("job_recomposed", job_id=str(job.id), tenant=who.id, shown=len(shown), key=key)
    url = d.store.presign(out["bucket"], key, d.settings.api_presign_seconds)
    return RecomposeView(output=Output(bucket=out["bucket"], key=key, url=url),
                         layers=layers.described(shown), bytes=len(cut.data),
                         content_type=cut.content_type, result=dict(cut.metadata))
