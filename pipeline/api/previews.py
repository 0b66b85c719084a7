"""``GET /v1/jobs/{id}/preview/{kind}``: a small PNG of a job's source, cut-out or mask.

What the review page (``/ui``) shows in its grid and its job detail, instead of the full-size
cut-out. A preview is derived once, in this process (``pipeline.imaging.preview``, in FastAPI's
thread pool, under the settings' decode limits), then kept in the output bucket
(``CLIPLINE_S3_OUTPUT_BUCKET``) at a key derived from what it shows::

    previews/<tenant>/<job id>/<kind>-<side>-<digest>.png

``digest`` covers the image it was made from, the job's attempts and when it finished, so a job
that is redriven (its source perhaps uploaded again) gets new previews instead of stale ones.
A source overwritten in place, without a version, while its job stands still keeps the preview
it had. Without an output bucket, previews are derived on every request and kept nowhere.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Literal

from fastapi import APIRouter, Depends, Query, Response

from pipeline import logs
from pipeline.api.deps import ApiDeps, deps, tenant
from pipeline.api.jobs import check_source
from pipeline.api.problems import Problem
from pipeline.api.schemas import problem_responses
from pipeline.errors import JobNotSucceeded, ObjectMissing
from pipeline.imaging.preview import CONTENT_TYPE, NoMask, PreviewKind, preview
from pipeline.jobs import Job, JobStatus
from pipeline.output_keys import PREVIEWS_PREFIX
from pipeline.tenants import Tenant

router = APIRouter(prefix="/v1", tags=["jobs"])
log = logs.get(__name__)

PreviewSize = Literal["small", "large"]
SIDES: dict[str, int] = {"small": 192, "large": 768}
CACHE_CONTROL = "private, max-age=300"  # the browser's own copy; the key is per job and image


class PngResponse(Response):
    media_type = CONTENT_TYPE


PNG_CONTENT = {CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}


def origin(job: Job, kind: PreviewKind) -> tuple[str, str, str | None]:
    """(bucket, key, version) of the image a preview of ``kind`` is made from."""
    if kind == "source":
        return job.bucket, job.key, job.version
    out = (job.result or {}).get("output")
    if job.status is not JobStatus.SUCCEEDED or not out:
        raise JobNotSucceeded(job.id, f"a {kind} preview needs a cut-out, and the job is "
                              f"{job.status.value}")
    return out["bucket"], out["key"], None


def preview_key(job: Job, kind: PreviewKind, side: int,
                source: tuple[str, str, str | None]) -> str:
    """Where the preview is kept: the same job, image and size always give the same key."""
    finished = job.finished_at.isoformat() if job.finished_at else ""
    made_from = "\n".join([*(part or "" for part in source), str(job.attempts), finished])
    digest = hashlib.sha256(made_from.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{PREVIEWS_PREFIX}/{job.tenant_id}/{job.id}/{kind}-{side}-{digest}.png"


@router.get("/jobs/{job_id}/preview/{kind}", response_class=PngResponse,
            responses={200: {"description": "The preview, a PNG.", "content": PNG_CONTENT},
                       **problem_responses(403, 404, 409, 422, 503)})
def job_preview(
    job_id: uuid.UUID,
    kind: PreviewKind,
    size: PreviewSize = Query(default="small", description="small: at most 192 px on the "
                              "longest side (the grid); large: at most 768 px (the detail)."),
    who: Tenant = Depends(tenant),
    d: ApiDeps = Depends(deps),
) -> Response:
    """A small PNG of the job's `source`, its `cutout` (colours and alpha) or its `mask` (the
    cut-out's alpha, in grey), never enlarged. `cutout` and `mask` need a job that has
    succeeded (`409 job_not_succeeded`); a cut-out without alpha has no mask
    (`409 no_mask`). A source that is missing or is not an image is the job's own reason
    (`422 object_missing`, `422 not_an_image`, ...)."""
    job = d.ledger.get(job_id, tenant=who.id)
    if d.store is None:
        raise Problem(503, "storage_unavailable", "Object storage is not configured",
                      "this API process has no object store to read images from")
    if kind == "source":  # the tenant's allowlist may have changed since the job was made
        check_source(who, job.bucket, job.key, door="api_preview",
                     uploads=d.settings.upload_area)
    made_from = origin(job, kind)
    side = SIDES[size]
    cache = d.settings.s3_output_bucket
    key = preview_key(job, kind, side, made_from)
    if cache is not None:
        try:
            return PngResponse(d.store.get(cache, key), headers={"Cache-Control": CACHE_CONTROL})
        except ObjectMissing:
            pass  # not derived yet
    bucket, image_key, version = made_from
    data = d.store.get(bucket, image_key, version=version)
    try:
        small = preview(data, kind, side, d.settings.decode_limits)
    except NoMask as exc:
        raise Problem(409, "no_mask", "The cut-out has no mask", str(exc)) from exc
    if cache is not None:
        d.store.put(cache, key, small, content_type=CONTENT_TYPE,
                    metadata={"job-id": str(job.id), "preview": f"{kind}-{side}"})
    log.info("job_preview_derived", job_id=str(job.id), tenant=who.id, kind=kind, side=side,
             bytes=len(small))
    return PngResponse(small, headers={"Cache-Control": CACHE_CONTROL})
