"""``/v1/jobs`` and ``/v1/dead-letters``: submit one job, poll it, list, cancel, re-drive."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Response

from pipeline import logs
from pipeline.api.deps import ApiDeps, deps, tenant
from pipeline.api.problems import Problem
from pipeline.api.schemas import (
    CURSOR_DESCRIPTION,
    Cursor,
    IdempotencyKey,
    JobPage,
    JobRequest,
    JobView,
    OutputRequest,
    Reason,
    RedriveRequest,
    RedriveResult,
    priority_for_deadline,
)
from pipeline.api.upload_schemas import JOB_FORM
from pipeline.callback_address import check_url
from pipeline.errors import CallbackRefused, ClipError, ModelNotServed
from pipeline.jobs import Dispatch, Job, JobSpec, JobStatus
from pipeline.models import check_served
from pipeline.options import OutputOptions
from pipeline.output_keys import Destination, Placer
from pipeline.tenants import Tenant, UploadArea, note_allow_any, source_allowed

router = APIRouter(prefix="/v1", tags=["jobs"])
log = logs.get(__name__)


def check_source(who: Tenant, bucket: str, key: str, door: str | None = "api_job", *,
                 uploads: UploadArea | None) -> None:
    """403 ``source_not_allowed`` unless the tenant may read ``bucket/key`` (its own uploads in
    ``uploads``, the settings' ``upload_area``, included); a source allowed only by the
    tenant's ``allow_any`` is logged under ``door`` (None: the caller logs once)."""
    if not source_allowed(who, bucket, key, uploads):
        raise Problem(403, "source_not_allowed", "This source is outside the tenant's allowlist",
                      f"s3://{bucket}/{key} is not under any of the tenant's allowed sources")
    if door is not None:
        note_allow_any(who, door, f"s3://{bucket}/{key}")


def callback_url(d: ApiDeps, url: Any) -> str | None:
    """The callback URL as text: https (plain http only where the settings allow it, in
    development) to a public address (``pipeline.callback_address``), else ``422``. A name
    that does not resolve now is accepted: delivery checks it again."""
    if url is None:
        return None
    if url.scheme != "https" and not d.settings.callbacks_allow_http:
        raise Problem(422, "callback_url_insecure", "Callback URLs must use https",
                      "set CLIPLINE_CALLBACKS_ALLOW_HTTP=true for local development")
    text = str(url)
    try:
        check_url(text, d.settings.callback_policy, d.resolve)
    except CallbackRefused as exc:
        raise Problem(422, "callback_url_not_allowed", "Callback URLs must reach a public "
                      "address", str(exc), why=exc.why) from exc
    except OSError:
        pass
    return text


def placer(d: ApiDeps, who: Tenant, output: OutputRequest | None) -> Placer | None:
    """What places a request's jobs where its ``output`` says (``pipeline.output_keys``); None
    when it names no destination. A bad template is ``422 invalid_output`` here, at once."""
    destination = None if output is None else Destination.of(output.bucket, output.key_template)
    if destination is None:
        return None
    return Placer(destination, who.id, tenant=who, output_prefix=d.settings.output_prefix,
                  own_bucket=d.settings.s3_output_bucket)


def chosen_model(d: ApiDeps, requested: str | None) -> str:
    """The model a request asked for, else the default; ``422 model_not_served`` (with the
    ``served`` list) for a model the deployment does not serve."""
    served = d.settings.served
    try:
        return check_served(requested or d.settings.model, served)
    except ModelNotServed as exc:
        raise Problem(422, ModelNotServed.reason, "The model is not served here", exc.message,
                      served=list(served)) from exc


def priority(d: ApiDeps, body: JobRequest) -> int:
    if body.deadline is None:
        return 5 if body.priority is None else body.priority
    if body.priority is not None:
        raise Problem(422, "priority_or_deadline", "Give a priority or a deadline, not both")
    now = d.ledger.clock.now()
    if body.deadline <= now:
        raise Problem(422, "deadline_passed", "The deadline has passed",
                      f"{body.deadline.isoformat()} is before {now.isoformat()}")
    return priority_for_deadline(body.deadline, now)


def publish(d: ApiDeps, jobs: list[Job]) -> None:
    """Wake workers for new jobs. A broker outage does not fail the request: the jobs are
    recorded, and the reconciler publishes them when Redis is back."""
    try:
        d.queue.publish([Dispatch(j.id, j.priority) for j in jobs])
    except ClipError as exc:
        log.warning("publish_deferred", reason=exc.reason, message=exc.message, jobs=len(jobs))


def view(d: ApiDeps, job: Job) -> JobView:
    url = None
    out = (job.result or {}).get("output")
    if job.status is JobStatus.SUCCEEDED and out and d.store is not None:
        url = d.store.presign(out["bucket"], out["key"], d.settings.api_presign_seconds)
    return JobView.of(job, url)


@router.post("/jobs", status_code=202, response_model=JobView, openapi_extra=JOB_FORM,
             responses={200: {"model": JobView, "description": "The job already existed."}})
def submit_job(
    body: JobRequest,
    response: Response,
    idempotency_key: IdempotencyKey | None = Header(default=None),
    who: Tenant = Depends(tenant),
    d: ApiDeps = Depends(deps),
) -> JobView:
    """Record a job and wake a worker. `202` with the new job.

    With an `Idempotency-Key`, the same request again answers `200` with the existing job;
    the key reused for a request that differs in anything (source, options, priority or
    deadline, model, callback_url) is `409 idempotency_conflict`, and the problem's `fields`
    names what differs. A deadline is compared as sent, so resending it later is the same
    request. Without a key, the same source, options and model answer `200` with the existing
    job, whatever the priority, deadline or callback_url: it is the same cut-out. `model` is
    one of the served models (absent: the default); another is `422 model_not_served`.
    `output` names where the cut-out goes (a bucket among the tenant's allowed outputs, else
    `403 output_not_allowed`; a key template, else `422 invalid_output`); the resolved key is
    in the answer's `destination` and is written on every attempt.

    A `multipart/form-data` body carries the image itself (`image`, at most
    CLIPLINE_UPLOAD_MAX_BYTES, else `413 upload_too_large`) and optionally `request`, this
    JSON body without `source`: the image is stored under the tenant's uploads, named by its
    SHA-256, and is the job's source; the rules above hold as they are. Not an image the
    decoder reads is `422` with its reason. Larger images: `POST /v1/uploads`."""
    check_source(who, body.source.bucket, body.source.key, uploads=d.settings.upload_area)
    options = OutputOptions.parse(body.options).normalised()
    model = chosen_model(d, body.model)
    spec = JobSpec(bucket=body.source.bucket, key=body.source.key, version=body.source.version,
                   options=options, model=model, priority=priority(d, body),
                   idempotency_key=idempotency_key, deadline=body.deadline)
    place = placer(d, who, body.output)
    if place is not None:
        spec = place.place(spec)
    result = d.ledger.submit(spec, tenant=who.id, callback_url=callback_url(d, body.callback_url))
    if result.created:
        publish(d, [result.job])
    else:
        response.status_code = 200
    response.headers["Location"] = f"/v1/jobs/{result.job.id}"
    return view(d, result.job)


@router.get("/jobs/{job_id}", response_model=JobView)
def get_job(job_id: uuid.UUID, who: Tenant = Depends(tenant),
            d: ApiDeps = Depends(deps)) -> JobView:
    """The job's status, attempts, last error and, once it succeeded, its output with a
    presigned URL and what the worker recorded (subject bbox, sizes, timings)."""
    return view(d, d.ledger.get(job_id, tenant=who.id))


@router.get("/jobs", response_model=JobPage)
def list_jobs(
    batch: uuid.UUID | None = None,
    status: JobStatus | None = None,
    reason: Reason | None = Query(default=None),
    after: Cursor | None = Query(default=None, description=CURSOR_DESCRIPTION),
    limit: int = Query(default=100, ge=1, le=1000),
    who: Tenant = Depends(tenant),
    d: ApiDeps = Depends(deps),
) -> JobPage:
    """The tenant's jobs, oldest first, filtered; page with `after`. Paged to its end (until
    `next_cursor` is null), a listing returns every job committed before its last page was
    read exactly once, even while other requests are inserting jobs."""
    found = d.ledger.page_jobs(tenant=who.id, batch_id=batch, status=status, reason=reason,
                               after=after, limit=limit)
    return JobPage(items=[view(d, j) for j in found.items], next_cursor=found.next_cursor)


@router.post("/jobs/{job_id}/cancel", response_model=JobView)
def cancel_job(job_id: uuid.UUID, who: Tenant = Depends(tenant),
               d: ApiDeps = Depends(deps)) -> JobView:
    """Cancel a queued or running job (`409` once it has finished)."""
    return view(d, d.ledger.cancel(job_id, tenant=who.id))


@router.get("/dead-letters", response_model=JobPage, tags=["dead letters"])
def dead_letters(
    reason: Reason | None = Query(default=None),
    batch: uuid.UUID | None = None,
    after: Cursor | None = Query(default=None, description=CURSOR_DESCRIPTION),
    limit: int = Query(default=100, ge=1, le=1000),
    who: Tenant = Depends(tenant),
    d: ApiDeps = Depends(deps),
) -> JobPage:
    """Dead jobs, with their reason codes and messages."""
    return list_jobs(batch, JobStatus.DEAD, reason, after, limit, who, d)


@router.post("/dead-letters/redrive", response_model=RedriveResult, tags=["dead letters"])
def redrive(body: RedriveRequest, who: Tenant = Depends(tenant),
            d: ApiDeps = Depends(deps)) -> RedriveResult:
    """Send dead jobs back to the queue with fresh attempts: by ids, reason or batch (combined
    with AND; at least one). The reconciler publishes them within its interval."""
    if not body.ids and body.reason is None and body.batch_id is None:
        raise Problem(422, "selector_required", "Give ids, a reason or a batch_id")
    moved = d.ledger.redrive(tenant=who.id, ids=body.ids or None, reason=body.reason,
                             batch_id=body.batch_id)
    return RedriveResult(redriven=moved)
