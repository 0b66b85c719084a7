"""``POST /v1.0/removebg``: remove.bg's API, served by Clipline's pipeline.

A synchronous facade: the request becomes an interactive job (``CLIPLINE_INTERACTIVE_PRIORITY``)
like any other, a worker cuts it out, and the handler polls the ledger until the job ends or
``CLIPLINE_REMOVEBG_WAIT_SECONDS`` pass (then ``504 result_pending`` with the job's id and URL;
the job goes on). No image work happens here beyond reading the upload's header.

- The key: ``X-Api-Key`` (or ``Authorization: Bearer``), a Clipline tenant key, checked by the
  door before the body is read. Its refusals, like every answer here, are remove.bg's error
  shape ``{"errors": [{"title", "code", "detail"}]}``: ``403`` for a missing or bad key.
- The image: ``image_file`` (multipart) or ``image_file_b64`` is stored under
  ``CLIPLINE_UPLOAD_PREFIX/<tenant>/<sha256>`` in the upload bucket (the same image
  with the same options is then the same job); ``image_url`` only as ``s3://`` inside the
  tenant's allowed sources. Clipline never fetches an http(s) URL.
- The fields: ``pipeline.removebg_params`` maps them, and says which are ignored or refused.
- The answer: the cut-out's bytes with ``X-Width``, ``X-Height``, ``X-Type``,
  ``X-Credits-Charged`` (0), or ``{"data": {"result_b64": ...}}`` for ``Accept:
  application/json``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Mapping
from typing import Any, Protocol

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipeline import logs
from pipeline.api.deps import ApiDeps, deps, tenant
from pipeline.api.jobs import publish
from pipeline.api.problems import Problem
from pipeline.api.removebg_schema import REQUEST_BODY, RESPONSES
from pipeline.api.uploads import refused
from pipeline.errors import ClipError, InvalidField
from pipeline.fields import BUCKET, KEY, check_text
from pipeline.jobs import Job, JobSpec, JobStatus
from pipeline.ports import UploadStore
from pipeline.removebg_params import SOURCE_FIELDS, Mapped, Refused, map_fields, s3_source
from pipeline.tenants import Tenant, note_allow_any, source_allowed
from pipeline.uploads import UploadsNotConfigured, UploadTooLarge, store_upload

PREFIX = "/v1.0/"
router = APIRouter(prefix="/v1.0", tags=["remove.bg"])
log = logs.get(__name__)
_FILE = "(file)"  # what a file part stands as among the fields
_MAX_FIELDS = 40  # remove.bg has about twenty fields; a form of hundreds is not a request
# Problems the door (or the app) raises, in remove.bg's words: (status, code, title).
_DOOR = {401: (403, "auth_failed", "API key invalid or missing"),
         413: (413, "file_too_large", "The request body is too large"),
         429: (429, "rate_limit_exceeded", "Rate limit exceeded")}


class RouteStore(UploadStore, Protocol):
    """What the route needs of the object store (``S3Store`` has it): an upload store that
    also reads."""

    def get(self, bucket: str, key: str, *, version: str | None = None) -> bytes: ...

    def head(self, bucket: str, key: str, *, version: str | None = None) -> dict[str, Any]: ...


def error(status: int, code: str, title: str, detail: str | None = None,
          headers: Mapping[str, str] | None = None, **extra: Any) -> JSONResponse:
    """remove.bg's error answer."""
    item = {"title": title, "code": code, **({"detail": detail} if detail else {}), **extra}
    return JSONResponse({"errors": [item]}, status_code=status, headers=headers)


def refusal(exc: Exception) -> JSONResponse:
    """A refusal of the door (or a problem raised on the way) in remove.bg's shape."""
    if isinstance(exc, Refused):
        return error(400, exc.code, exc.title, exc.detail)
    if isinstance(exc, Problem):
        status, code, title = _DOOR.get(exc.status, (exc.status, exc.code, exc.title))
        extra = {k: v for k, v in exc.extra.items() if k != "retry_after"}
        retry = exc.extra.get("retry_after")
        headers = {"Retry-After": str(max(1, round(retry)))} if retry else None
        if "job_url" in extra:
            headers = {"Location": extra["job_url"]}
        return error(status, code, title, exc.detail, headers, **extra)
    if isinstance(exc, RequestValidationError):
        return error(400, "invalid_body", "The request body is not valid",
                     "; ".join(str(e.get("msg", "")) for e in exc.errors()))
    if isinstance(exc, ClipError):
        if exc.transient:
            return error(503, exc.reason, "A service Clipline needs is unavailable",
                         exc.message, {"Retry-After": "5"})
        return error(400, exc.reason, "The request cannot be honoured", exc.message)
    log.error("removebg_unexpected_error", error=type(exc).__name__, exc_info=exc)
    return error(500, "internal_error", "Internal error", "the error is logged")


@router.post("/removebg", response_class=Response, responses=RESPONSES,
             openapi_extra=REQUEST_BODY)
async def remove_background(request: Request, who: Tenant = Depends(tenant),
                            d: ApiDeps = Depends(deps)) -> Response:
    """remove.bg's `POST /v1.0/removebg`, answered by a Clipline job (see the README's table
    of the parameters that map, are ignored, or are refused)."""
    try:
        fields, source = await _read_body(request, d.settings.removebg_max_image_bytes)
        mapped = map_fields(fields)
        job = await run_in_threadpool(_submit, d, who, source, mapped)
        job = await _wait(d, job, who.id)
        if job.status is not JobStatus.SUCCEEDED:
            return _failed(job)
        return await run_in_threadpool(_answer, d, job, mapped,
                                       "application/json" in request.headers.get("accept", ""))
    except (Refused, Problem, ClipError) as exc:
        return refusal(exc)
    except _TooLarge as exc:
        return error(413, "file_too_large", "The image is too large", str(exc))


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> tuple[dict[str, object], bytes | str]:
    """The fields, and the one image source: its bytes, or the ``image_url`` text."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    image: bytes | None = None
    if media in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields, image = await _read_form(request, limit)
    elif media == "application/json" or media.endswith("+json"):
        fields = _read_json(await request.body())
    else:
        raise Refused("invalid_content_type", "Unsupported Content-Type",
                      "send multipart/form-data, application/x-www-form-urlencoded or "
                      "application/json")
    given = [name for name in SOURCE_FIELDS if fields.get(name) not in (None, "")]
    if len(given) != 1:
        raise Refused("missing_source" if not given else "multiple_sources",
                      "Give exactly one image source",
                      f"one of {', '.join(SOURCE_FIELDS)}; got {', '.join(given) or 'none'}")
    value = fields[given[0]]
    if given[0] == "image_url":
        if not isinstance(value, str):
            raise Refused("invalid_parameter", "image_url must be a string")
        return fields, value
    if given[0] == "image_file_b64":
        image = _unbase64(value)
    if image is None:
        raise Refused("invalid_parameter", "image_file must be a file",
                      "send image_file as a file of a multipart/form-data body, or use "
                      "image_file_b64")
    if len(image) > limit:
        raise _TooLarge(f"{len(image)} bytes; at most {limit}")
    return fields, image


def _unbase64(value: object) -> bytes:
    if not isinstance(value, str):
        raise Refused("invalid_parameter", "image_file_b64 must be a string")
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Refused("invalid_parameter", "image_file_b64 is not valid base64") from exc


async def _read_form(request: Request, limit: int) -> tuple[dict[str, object], bytes | None]:
    try:
        form = await request.form(max_files=2, max_fields=_MAX_FIELDS, max_part_size=2 * limit)
    except StarletteHTTPException as exc:
        raise Refused("invalid_body", "The form is not valid", str(exc.detail)) from exc
    fields: dict[str, object] = {}
    image = None
    try:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name == "image_file":
                    image = await value.read(limit + 1)
                fields[name] = _FILE
            else:
                fields[name] = value
    finally:
        await form.close()
    if fields.get("image_file") == _FILE and not image:
        raise Refused("invalid_parameter", "image_file is empty")
    return fields, image


def _read_json(body: bytes) -> dict[str, object]:
    try:
        found = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Refused("invalid_body", "The body is not JSON", str(exc)[:200]) from exc
    if not isinstance(found, dict):
        raise Refused("invalid_body", "The body must be a JSON object")
    return found


def _submit(d: ApiDeps, who: Tenant, source: bytes | str, mapped: Mapped) -> Job:
    """Record the job (or find the same one) and wake a worker. Blocking: S3 and the ledger.
    ``source``: the image's bytes, or an ``image_url``."""
    store = _store(d)
    if isinstance(source, str):
        bucket, key = _allowed_url(who, source)
        store.head(bucket, key)  # a missing object is refused now, not after a worker tried
        note_allow_any(who, "api_removebg", f"s3://{bucket}/{key}")
    else:
        bucket, key = _upload(d, store, who, source)
    spec = JobSpec(bucket=bucket, key=key, options=mapped.options.normalised(),
                   model=d.settings.model, priority=d.settings.interactive_priority)
    result = d.ledger.submit(spec, tenant=who.id)
    if result.created:
        publish(d, [result.job])
    log.info("removebg_job", job_id=str(result.job.id), tenant=who.id,
             created=result.created, ignored=list(mapped.ignored))
    job: Job = result.job
    return job


def _allowed_url(who: Tenant, url: str) -> tuple[str, str]:
    bucket, key = s3_source(url)
    try:
        check_text(bucket, BUCKET)
        check_text(key, KEY)
    except InvalidField as exc:
        raise Refused("invalid_parameter", "image_url is not valid", str(exc)) from exc
    if not source_allowed(who, bucket, key):
        raise Refused("source_not_allowed", "image_url is outside the tenant's allowed sources",
                      f"s3://{bucket}/{key} is not under any of the tenant's allowed sources")
    return bucket, key


def _upload(d: ApiDeps, store: RouteStore, who: Tenant, image: bytes) -> tuple[str, str]:
    """Store an uploaded image in the tenant's upload area, as ``POST /v1/jobs`` multipart
    does (``pipeline.uploads``): checked first, then named by its content's digest."""
    try:
        return store_upload(store, d.settings.upload_area, who.id, image,
                            max_bytes=d.settings.removebg_max_image_bytes,
                            limits=d.settings.decode_limits)
    except (UploadTooLarge, UploadsNotConfigured) as exc:
        raise refused(exc) from exc


def _store(d: ApiDeps) -> RouteStore:
    if d.store is None:
        raise Problem(503, "storage_not_configured", "Object storage is not configured")
    store: Any = d.store
    return store  # type: ignore[no-any-return]


async def _wait(d: ApiDeps, job: Job, tenant_id: str) -> Job:
    """The job once it has ended, else ``Problem`` 504 when the wait is over."""
    deadline = time.monotonic() + d.settings.removebg_wait_seconds
    while not job.status.terminal:
        if time.monotonic() >= deadline:
            raise Problem(504, "result_pending", "The result is not ready yet",
                          f"the job goes on: poll /v1/jobs/{job.id} (GET, same key)",
                          job_id=str(job.id), job_url=f"/v1/jobs/{job.id}")
        await asyncio.sleep(d.settings.removebg_poll_seconds)
        job = await run_in_threadpool(d.ledger.get, job.id, tenant=tenant_id)
    return job


def _failed(job: Job) -> Response:
    """A job that ended without a cut-out: its reason, as remove.bg's 400."""
    if job.status is JobStatus.CANCELLED:
        return error(400, "job_cancelled", "The job was cancelled", job_id=str(job.id))
    return error(400, job.last_error_code or "failed", "The image could not be processed",
                 job.last_error_message, job_id=str(job.id))


def _answer(d: ApiDeps, job: Job, mapped: Mapped, as_json: bool) -> Response:
    result = job.result or {}
    out = result["output"]
    data = _store(d).get(out["bucket"], out["key"])
    width, height = (result.get("output_size") or [0, 0])[:2]
    headers = {"X-Width": str(width), "X-Height": str(height), "X-Type": "other",
               "X-Credits-Charged": "0", "X-Clipline-Job-Id": str(job.id)}
    if as_json:
        body = {"data": {"result_b64": base64.b64encode(data).decode("ascii")}}
        return JSONResponse(body, headers=headers)
    return Response(data, media_type=mapped.options.content_type, headers=headers)
