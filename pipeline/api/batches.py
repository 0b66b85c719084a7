"""``/v1/batches``: a manifest inline, as an S3 object, or an S3 prefix → one batch of jobs.

An inline manifest (up to 10,000 lines) is recorded before the answer. A manifest object or a
prefix may hold millions of lines, so the answer comes at once (`202`, state `expanding`) and
the expansion runs in the background: one bulk insert, then the messages, then state `ready`
with the counts, or `failed` with the reason (a bad line refuses the whole manifest). Every path
ends `ready` or `failed` (``pipeline.batches`` draws them, the reconciler's included).
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Depends

from pipeline import logs
from pipeline.api.deps import ApiDeps, deps, tenant
from pipeline.api.jobs import callback_url, check_source, chosen_model, placer, publish
from pipeline.api.problems import Problem
from pipeline.api.schemas import BatchReportView, BatchRequest, BatchView, Output
from pipeline.batches import EXPANDING, FAILED, PUBLISHING, READY
from pipeline.errors import (
    ClipError,
    IdempotencyConflict,
    InvalidManifest,
    ObjectTooLarge,
    UsageError,
)
from pipeline.fields import escaped
from pipeline.intake import manifest_lines, prefix_specs, queued_pages, specs_of
from pipeline.jobs import JobSpec, JobStatus
from pipeline.models import check_served
from pipeline.options import OutputOptions
from pipeline.output_keys import Placer
from pipeline.tenants import Tenant, note_allow_any

router = APIRouter(prefix="/v1", tags=["batches"])
log = logs.get(__name__)
PAGE = 1000


@router.post("/batches", status_code=202, response_model=BatchView)
def create_batch(body: BatchRequest, background: BackgroundTasks, who: Tenant = Depends(tenant),
                 d: ApiDeps = Depends(deps)) -> BatchView:
    """Create a batch from exactly one of `items`, `manifest` or `prefix`.

    Every job's model is one the deployment serves: `model` (else the default) unless an item
    or a manifest line names its own. A model not served is `422 model_not_served` for the
    request's and the items' models; a manifest line's fails the batch with that reason."""
    if sum(x is not None for x in (body.items, body.manifest, body.prefix)) != 1:
        raise Problem(422, "one_source_required", "Give exactly one of items, manifest, prefix")
    hook = callback_url(d, body.callback_url)
    announce = callback_url(d, body.report_callback_url)
    model = chosen_model(d, body.model)
    place = placer(d, who, body.output)
    area = d.settings.upload_area  # a tenant's own uploads are its sources too
    defaults = {"options": OutputOptions.parse(body.options).normalised(),
                "priority": body.priority, "model": model}
    if body.items is not None:
        specs = [JobSpec(bucket=i.bucket, key=i.key, version=i.version,
                         options=OutputOptions.parse({**body.options, **(i.options or {})})
                         .normalised(),
                         priority=body.priority if i.priority is None else i.priority,
                         model=chosen_model(d, i.model or model)) for i in body.items]
        for spec in specs:
            check_source(who, spec.bucket, spec.key, door=None, uploads=area)
        if place is not None:  # refused at once (403, 422), before the batch exists
            specs = list(place.place_all(specs))
        note_allow_any(who, "api_batch", f"{len(specs)} items")
        batch_id = d.ledger.create_batch(who.id, label=body.label, meta={"state": EXPANDING})
        if announce is not None:
            d.ledger.set_batch_callback(batch_id, announce)
        expand(d, who, batch_id, iter(specs), hook)
    else:
        if d.store is None:
            raise Problem(503, "storage_unavailable", "No object store is configured")
        # Where the batch reads from is a source too: a tenant never makes Clipline read (or
        # list) what its allowlist does not cover, not even to fail on it.
        if body.manifest is not None:
            check_source(who, body.manifest.bucket, body.manifest.key, door="api_manifest",
                         uploads=d.settings.upload_area)
        else:
            assert body.prefix is not None
            bucket, _, prefix = body.prefix.removeprefix("s3://").partition("/")
            check_source(who, bucket, prefix, door="api_prefix", uploads=d.settings.upload_area)
        batch_id = d.ledger.create_batch(who.id, label=body.label, meta={"state": EXPANDING})
        if announce is not None:
            d.ledger.set_batch_callback(batch_id, announce)
        background.add_task(expand, d, who, batch_id, source_specs(d, body, defaults), hook,
                            place)
    return batch_view(d, who, batch_id)


def source_specs(d: ApiDeps, body: BatchRequest, defaults: dict[str, Any]) -> Iterator[JobSpec]:
    """The specs of a manifest object or a prefix, read lazily (in the background task)."""
    assert d.store is not None
    if body.manifest is not None:
        try:  # the API's store reads at most CLIPLINE_API_MAX_MANIFEST_BYTES, while streaming
            data = d.store.get(body.manifest.bucket, body.manifest.key,
                               version=body.manifest.version)
        except ObjectTooLarge as exc:
            raise InvalidManifest(f"the manifest is over the limit of "
                                  f"{d.settings.api_max_manifest_bytes} bytes "
                                  "(CLIPLINE_API_MAX_MANIFEST_BYTES)") from exc
        lines = manifest_lines(io.BytesIO(data))
        yield from specs_of(body.manifest.key, lines, defaults)
        return
    assert body.prefix is not None
    bucket, _, prefix = body.prefix.removeprefix("s3://").partition("/")
    yield from prefix_specs(bucket, d.store.list_keys(bucket, prefix), defaults)


def expand(d: ApiDeps, who: Tenant, batch_id: uuid.UUID, specs: Iterator[JobSpec],
           hook: str | None = None, place: Placer | None = None) -> None:
    """Insert the batch's jobs in one transaction, publish them, record the outcome. With
    ``place``, each job gets its output destination; a line outside the tenant's allowed
    outputs or two jobs writing one object fail the batch (``output_not_allowed``,
    ``output_key_collision``), like a bad line."""
    area = d.settings.upload_area

    def allowed() -> Iterator[JobSpec]:
        for spec in specs:  # every line of a manifest, every key under a prefix
            check_source(who, spec.bucket, spec.key, door=None, uploads=area)
            check_served(spec.model, d.settings.served)  # a manifest line may name one
            yield spec if place is None else place.place(spec)

    try:
        result = d.ledger.submit_many(allowed(), tenant=who.id, batch_id=batch_id,
                                      callback_url=hook)
    except (ClipError, UsageError, IdempotencyConflict, Problem) as exc:
        reason = getattr(exc, "code", None) or getattr(exc, "reason", "refused")
        log.warning("batch_refused", batch_id=str(batch_id), reason=reason, message=str(exc))
        d.ledger.set_batch_meta(batch_id, {"state": FAILED, "reason": reason,
                                           "message": escaped(str(exc))})
        return
    except Exception as exc:  # the background task's outer edge: a batch never stays stuck
        log.error("batch_expansion_crashed", batch_id=str(batch_id), exc_info=exc)
        d.ledger.set_batch_meta(batch_id, {"state": FAILED, "reason": "internal_error",
                                           "message": "the expansion failed unexpectedly; "
                                           "the API's log has the details"})
        return
    # Every job is recorded and queued now; what remains is waking the workers.
    counts = {"received": result.received, "inserted": result.inserted,
              "duplicates": result.duplicates}
    d.ledger.set_batch_meta(batch_id, {"state": PUBLISHING, **counts})
    for page in queued_pages(d.ledger, batch_id, PAGE):
        publish(d, page)
    d.ledger.set_batch_meta(batch_id, {"state": READY, **counts})


@router.get("/batches/{batch_id}", response_model=BatchView)
def get_batch(batch_id: uuid.UUID, who: Tenant = Depends(tenant),
              d: ApiDeps = Depends(deps)) -> BatchView:
    """Counts by status, dead letters by reason, the last minute's throughput and an estimate
    of when the batch will be done."""
    return batch_view(d, who, batch_id)


def batch_view(d: ApiDeps, who: Tenant, batch_id: uuid.UUID) -> BatchView:
    row = d.ledger.get_batch(batch_id, tenant=who.id)
    counts = d.ledger.batch_counts(batch_id)
    now = d.ledger.clock.now()
    per_minute = d.ledger.completions_since(batch_id, now - timedelta(minutes=1))
    left = counts[JobStatus.QUEUED] + counts[JobStatus.RUNNING]
    eta = now + timedelta(minutes=left / per_minute) if per_minute and left else None
    meta = dict(row["meta"] or {})
    report = meta.pop("report", None)
    return BatchView(
        id=row["id"], label=row["label"], state=meta.pop("state", "ready"),
        expansion=meta or None,
        counts={s.value: counts[s] for s in JobStatus}, dead_by_reason=dict(counts.dead_by_reason),
        throughput_per_minute=float(per_minute), estimated_finish=eta,
        created_at=row["created_at"],
        report=report_view(d, report) if report and row.get("reported_at") else None,
    )


def report_view(d: ApiDeps, report: dict[str, Any]) -> BatchReportView:
    """The recorded report with a presigned URL for each file (when a store is configured)."""
    def output(key: str) -> Output:
        url = (d.store.presign(report["bucket"], key, d.settings.api_presign_seconds)
               if d.store is not None else None)
        return Output(bucket=report["bucket"], key=key, url=url)

    return BatchReportView(jsonl=output(report["jsonl"]), csv=output(report["csv"]),
                           jobs=report["jobs"], counts=report["counts"],
                           written_at=report["written_at"])
