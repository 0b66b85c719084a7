"""Direct upload: the image in ``POST /v1/jobs`` itself (multipart), or a presigned PUT for it
(``POST /v1/uploads``). Both store under the tenant's uploads (``pipeline.uploads``); the job is
then a normal one (``jobs.submit_job``): the same checks, dedupe and ``Idempotency-Key`` rules.

The door has authenticated the key and taken its rate before either route runs, and counts a
multipart body against ``CLIPLINE_API_MAX_BODY_BYTES`` as it is read (413 ``body_too_large``);
the image inside is then held to ``CLIPLINE_UPLOAD_MAX_BYTES`` (413 ``upload_too_large``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, Header, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import Scope

from pipeline import json_limits, logs
from pipeline.api.deps import ApiDeps, deps, tenant
from pipeline.api.jobs import submit_job
from pipeline.api.problems import Problem
from pipeline.api.schemas import IdempotencyKey, JobRequest, JobView, SourceView
from pipeline.api.upload_schemas import UploadRequest, UploadView
from pipeline.tenants import Tenant
from pipeline.uploads import UploadsNotConfigured, UploadTooLarge, grant_upload, store_upload

router = APIRouter(prefix="/v1", tags=["jobs"])
log = logs.get(__name__)
_REQUEST_PART_BYTES = 64 * 1024

# The JSON body's fields but ``source``: what the multipart ``request`` part may say.
JobUpload: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "JobUpload", __config__=ConfigDict(extra="forbid"),
    **{name: (f.annotation, f) for name, f in JobRequest.model_fields.items()
       if name != "source"})


class FormRoute(APIRoute):
    """A route that takes only ``multipart/form-data`` bodies, so that a JSON route at the
    same path and method (registered after it) answers every other request as before."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        media = Headers(scope=scope).get("content-type", "").partition(";")[0].strip().lower()
        return (match, child) if media == "multipart/form-data" else (Match.NONE, {})


def refused(exc: UploadTooLarge | UploadsNotConfigured) -> Problem:
    if isinstance(exc, UploadTooLarge):
        return Problem(413, exc.reason, "The image is too large", str(exc))
    return Problem(503, exc.reason, "Uploads are not configured", str(exc))


def submit_upload(
    response: Response,
    image: UploadFile = File(),
    request: str | None = Form(default=None, max_length=_REQUEST_PART_BYTES),
    idempotency_key: IdempotencyKey | None = Header(default=None),
    who: Tenant = Depends(tenant),
    d: ApiDeps = Depends(deps),
) -> JobView:
    """`POST /v1/jobs` with the image itself (described on the JSON route's operation)."""
    fields = _request_fields(request)
    data = image.file.read(d.settings.upload_max_bytes + 1)
    if d.store is None:
        raise Problem(503, "storage_not_configured", "Object storage is not configured")
    try:
        bucket, key = store_upload(d.store, d.settings.upload_area, who.id, data,
                                   max_bytes=d.settings.upload_max_bytes,
                                   limits=d.settings.decode_limits)
    except (UploadTooLarge, UploadsNotConfigured) as exc:
        raise refused(exc) from exc
    body = JobRequest.model_validate({**fields, "source": {"bucket": bucket, "key": key}})
    log.info("job_image_uploaded", tenant=who.id, key=key, bytes=len(data))
    return submit_job(body, response, idempotency_key, who, d)


router.add_api_route("/jobs", submit_upload, methods=["POST"], status_code=202,
                     response_model=JobView, include_in_schema=False,
                     route_class_override=FormRoute)


def _request_fields(text: str | None) -> dict[str, Any]:
    """The ``request`` part, parsed and checked as the JSON body would be (422 otherwise)."""
    if text is None or not text.strip():
        return {}
    try:
        fields = json_limits.loads(text)  # nested too deep: refused before parsing
    except ValueError as exc:  # JsonLimitExceeded, or not JSON
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", "request"),
                                       "msg": str(exc)[:200], "input": {}}]) from None
    try:
        JobUpload.model_validate(fields)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", "request", *e["loc"])}
                                      for e in exc.errors()]) from None
    assert isinstance(fields, dict)  # JobUpload takes only an object
    return fields


@router.post("/uploads", response_model=UploadView, tags=["uploads"])
def create_upload(body: UploadRequest, who: Tenant = Depends(tenant),
                  d: ApiDeps = Depends(deps)) -> UploadView:
    """A presigned PUT for an image too large for `POST /v1/jobs`' multipart body (up to
    CLIPLINE_MAX_INPUT_BYTES, else `413 upload_too_large`), under a fresh name among the
    tenant's uploads, valid CLIPLINE_UPLOAD_URL_SECONDS. PUT the image to `url` with exactly
    `headers` (S3 refuses another length, type or, with `sha256`, other bytes), then submit
    `POST /v1/jobs` with `source`: a normal job, with the usual idempotency rules. Each call
    names a new object; nothing is stored until the PUT. That the bytes are an image is
    checked by the worker, which dead-letters anything else (`not_an_image`, ...)."""
    if d.store is None:
        raise Problem(503, "storage_not_configured", "Object storage is not configured")
    try:
        grant = grant_upload(d.store, d.settings.upload_area, who.id,
                             content_type=body.content_type, size=body.size, sha256=body.sha256,
                             max_bytes=d.settings.max_input_bytes,
                             formats=d.settings.decode_limits.formats,
                             seconds=d.settings.upload_url_seconds)
    except (UploadTooLarge, UploadsNotConfigured) as exc:
        raise refused(exc) from exc
    log.info("upload_granted", tenant=who.id, key=grant.key, bytes=body.size)
    return UploadView(url=grant.put.url, headers=grant.put.headers,
                      expires_at=grant.put.expires_at, max_bytes=grant.max_bytes,
                      source=SourceView(bucket=grant.bucket, key=grant.key))
