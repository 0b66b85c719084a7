"""The API's request and response bodies: the OpenAPI contract, checked by FastAPI."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StrictInt,
    WithJsonSchema,
)

from pipeline import fields
from pipeline.jobs import Job, JobStatus
from pipeline.paging import MAX_CURSOR_CHARS

MAX_INLINE_ITEMS = 10_000
MAX_LAYER_IDS = 10_000
MAX_LAYER_ID = 1_000_000
NO_CONTROLS = r"^[^\x00-\x1f\x7f-\x9f]*$"


def text_schema(spec: fields.TextField, description: str | None = None) -> WithJsonSchema:
    """The OpenAPI schema of a text field held to ``spec`` (``pipeline.fields``: no control
    characters, no lone surrogates, the column's length); ``spec.check`` enforces it."""
    schema: dict[str, Any] = {"type": "string", "minLength": spec.min_chars}
    if spec.max_chars is not None or spec.max_bytes is not None:
        schema["maxLength"] = spec.max_chars or spec.max_bytes
    schema["pattern"] = spec.pattern.pattern.join("^$") if spec.pattern else NO_CONTROLS
    if description:
        schema["description"] = description
    return WithJsonSchema(schema)


Bucket = Annotated[str, AfterValidator(fields.BUCKET.check), text_schema(fields.BUCKET)]
Key = Annotated[str, AfterValidator(fields.KEY.check), text_schema(
    fields.KEY, "The object key, at most 1,024 bytes of UTF-8, no control characters.")]
Version = Annotated[str, AfterValidator(fields.VERSION.check), text_schema(
    fields.VERSION, "S3 versionId, or a quoted ETag to pin the content.")]
Label = Annotated[str, AfterValidator(fields.LABEL.check), text_schema(fields.LABEL)]
Reason = Annotated[str, AfterValidator(fields.REASON.check), text_schema(fields.REASON)]
IdempotencyKey = Annotated[str, AfterValidator(fields.IDEMPOTENCY_KEY.check),
                           text_schema(fields.IDEMPOTENCY_KEY)]
Priority = Annotated[int, Field(ge=fields.PRIORITY.low, le=fields.PRIORITY.high)]
MODEL_DESCRIPTION = (
    "The segmentation model, one of those the deployment serves (CLIPLINE_SERVED_MODELS, e.g. "
    "`u2net` or `u2netp`); absent: the deployment's default (CLIPLINE_MODEL). A model it does "
    "not serve is `422 model_not_served`, whose `served` lists the ones it does.")
Model = Annotated[str, AfterValidator(fields.MODEL.check),
                  text_schema(fields.MODEL, MODEL_DESCRIPTION)]
CURSOR_DESCRIPTION = (
    "An opaque paging cursor: the previous page's `next_cursor`, passed as it came (URL-safe "
    "text, about a hundred characters, a few more for each write transaction open in the "
    "database server). Jobs are listed by the transaction that inserted them; a cursor "
    "remembers the transactions still open when its page was read and lists their jobs once "
    "they commit, so a listing paged to its end returns every job committed before its last "
    "page was read, each exactly once.")
Cursor = Annotated[str, Field(min_length=1, max_length=MAX_CURSOR_CHARS,
                              pattern=r"^[A-Za-z0-9_-]+$", description=CURSOR_DESCRIPTION)]


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket: Bucket
    key: Key
    version: Version | None = None


def prefix_url(value: str) -> str:
    """``s3://bucket/prefix``: the bucket and the prefix checked as a bucket name and a key."""
    bucket, _, prefix = value.removeprefix("s3://").partition("/")
    fields.BUCKET.check(bucket)
    fields.PREFIX.check(prefix)
    return value


KEY_TEMPLATE_DESCRIPTION = (
    "A key template over the source key, resolved when the job is recorded, e.g. "
    "`{prefix}/{key_dir}/{key_stem}.{ext}` to mirror the source tree. Placeholders: {prefix} "
    "(the tenant's own area of the service's bucket, `cutouts/<tenant>`), {tenant}, {bucket}, "
    "{key}, {key_dir}, {key_name}, {key_stem}, {key_ext}, {ext} (the output's), {model}; "
    "`{{`/`}}` are literal braces. An empty {key_dir} takes its `/` along. Refused (422 "
    "`invalid_output`): unknown placeholders, `..`/`.`/empty segments, keys over 1,024 bytes, an "
    "output that would overwrite its source; two jobs of one batch writing one key are "
    "`output_key_collision`. Absent: `<prefix>/<job id>.<ext>`.")


class OutputRequest(BaseModel):
    """Where the cut-outs go (``pipeline.output_keys``)."""

    model_config = ConfigDict(extra="forbid")

    bucket: Bucket | None = Field(
        default=None, description="The output bucket: one of the tenant's allowed outputs "
        "(403 `output_not_allowed` otherwise). Absent: the service's output bucket, where the "
        "tenant may write under its own area, {prefix}.")
    key_template: str | None = Field(default=None, min_length=1, max_length=1024,
                                     description=KEY_TEMPLATE_DESCRIPTION)


class DestinationView(BaseModel):
    """The destination recorded with a job: the bucket (null: the service's) and the key it
    resolved to (null: the default key, `<prefix>/<job id>.<ext>`)."""

    bucket: str | None
    key: str | None


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Source
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Output options, the engine's names: format, channels, bg_color, crop, "
        "crop_margin, max_side, subject, edges, strict_empty, layers.")
    model: Model | None = None
    priority: Priority | None = Field(
        default=None, description="Higher first; at or above the interactive threshold the job "
        "goes to the interactive queue. Default 5.")
    deadline: AwareDatetime | None = Field(
        default=None, description="Instead of a priority: when the cut-out is needed. Sooner "
        "means a higher priority (see `priority_for_deadline`).")
    callback_url: HttpUrl | None = Field(
        default=None, description="POSTed the finished job, signed with the tenant's secret "
        "(header Clipline-Signature).")
    output: OutputRequest | None = Field(
        default=None, description="Where the cut-out goes; absent: the service's bucket at "
        "`<prefix>/<job id>.<ext>`. Part of what makes two requests the same job.")


class SourceView(BaseModel):
    """A job's source as recorded (what ``Source`` accepted when the job was submitted)."""

    bucket: str
    key: str
    version: str | None = None


class Output(BaseModel):
    bucket: str
    key: str
    url: str | None = Field(default=None, description="A presigned GET URL, when available.")


class JobView(BaseModel):
    id: uuid.UUID
    status: JobStatus
    batch_id: uuid.UUID | None
    source: SourceView
    options: dict[str, Any]
    model: str = Field(description="The model that makes (or made) the cut-out.")
    priority: int
    attempts: int
    max_attempts: int
    error: str | None = Field(description="Reason code of the last failure.")
    message: str | None
    output: Output | None
    destination: DestinationView | None = Field(
        default=None, description="The output destination the job was submitted with, "
        "resolved; null: the default place.")
    result: dict[str, Any] | None = Field(
        description="Subject bbox, sizes, uncertainty, timings: what the worker recorded.")
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, job: Job, url: str | None = None) -> JobView:
        result = dict(job.result) if job.result else None
        out = (result or {}).get("output")
        return cls(
            id=job.id, status=job.status, batch_id=job.batch_id,
            source=SourceView(bucket=job.bucket, key=job.key, version=job.version),
            options=dict(job.options), model=job.model, priority=job.priority,
            attempts=job.attempts,
            max_attempts=job.max_attempts, error=job.last_error_code,
            message=job.last_error_message,
            output=Output(bucket=out["bucket"], key=out["key"], url=url) if out else None,
            destination=(None if job.output_bucket is None and job.output_key is None else
                         DestinationView(bucket=job.output_bucket, key=job.output_key)),
            result=result, created_at=job.created_at, finished_at=job.finished_at,
        )


class JobPage(BaseModel):
    items: list[JobView]
    next_cursor: str | None = Field(
        description="Pass as `after` for the next page (opaque). Null on a page that is not "
        "full: the listing has reached its end, every job committed before this page was read "
        "has been listed. A full last page still gives a cursor, whose page is then empty.")


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket: Bucket
    key: Key
    version: Version | None = None
    options: dict[str, Any] | None = None
    model: Model | None = Field(default=None, description="This item's model; absent: the "
                                "batch's `model`.")
    priority: Priority | None = None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Label | None = None
    items: list[BatchItem] | None = Field(default=None, max_length=MAX_INLINE_ITEMS,
                                          description="An inline manifest.")
    manifest: Source | None = Field(default=None, description="A manifest object in S3: one "
                                    "job per line, S3 URLs or JSON objects.")
    prefix: Annotated[str, AfterValidator(prefix_url)] | None = Field(
        default=None, pattern=r"^s3://[a-z0-9][a-z0-9.\-]+/.*$",
        description="Every image under s3://bucket/prefix/.")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="Default output options for every line.")
    model: Model | None = Field(default=None, description="The model of every line that names "
                                "none (a manifest's JSON or CSV line may: `model`). "
                                + MODEL_DESCRIPTION)
    priority: Priority = 0
    callback_url: HttpUrl | None = Field(default=None, description="A callback for each job.")
    report_callback_url: HttpUrl | None = Field(
        default=None, description="The batch's own callback: POSTed (`type` "
        "`batch.reported`, signed like a job's) once the batch has finished and its report is "
        "written, with where the report is and the counts; again after a redrive finishes it.")
    output: OutputRequest | None = Field(
        default=None, description="Where every job's cut-out goes, its key template resolved "
        "per job; two different jobs of the batch that would write one object refuse the "
        "batch (`output_key_collision`).")


class BatchReportView(BaseModel):
    """Where a finished batch's results manifest is (``pipeline.batch_report``)."""

    jsonl: Output
    csv: Output
    jobs: int = Field(description="Rows in the report: the batch's jobs.")
    counts: dict[str, int] = Field(description="The jobs by status when it was written.")
    written_at: datetime


class BatchView(BaseModel):
    id: uuid.UUID
    label: str | None
    state: Literal["expanding", "publishing", "ready", "failed"] = Field(
        description="expanding: reading the manifest or the prefix; publishing: every job is "
        "queued, the workers are being woken; ready: done (also when the API process stopped "
        "after the jobs were recorded); failed: nothing was recorded, and `expansion.reason` "
        "says why (invalid_manifest with the line, source_not_allowed, object_missing, "
        "idempotency_conflict, internal_error, expansion_lost when the API process stopped). "
        "Every batch ends ready or failed.")
    expansion: dict[str, Any] | None = Field(description="Lines received and inserted, or why "
                                             "the manifest was refused.")
    counts: dict[str, int]
    dead_by_reason: dict[str, int]
    throughput_per_minute: float = Field(description="Jobs finished in the last minute.")
    estimated_finish: datetime | None
    created_at: datetime
    report: BatchReportView | None = Field(
        default=None, description="The results manifest, once the batch has finished (every "
        "job succeeded, dead or cancelled; the reconciler writes it within its interval): one "
        "row per job in JSON lines and CSV. A redriven batch gets it rewritten when it "
        "finishes again. Null until then.")


class RedriveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[uuid.UUID] | None = Field(default=None, max_length=10_000)
    reason: Reason | None = None
    batch_id: uuid.UUID | None = None


class RedriveResult(BaseModel):
    redriven: int


def distinct_ids(ids: list[int]) -> list[int]:
    if len(set(ids)) != len(ids):
        raise ValueError("each part id at most once")
    return ids


LayerId = Annotated[StrictInt, Field(ge=0, le=MAX_LAYER_ID)]


class RecomposeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layers: Annotated[list[LayerId], AfterValidator(distinct_ids)] = Field(
        max_length=MAX_LAYER_IDS,
        description="The ids of the parts to show (the `id`s of the job's `result.layers`), "
        "each once; the others are hidden. `[]` shows none: a transparent output.")
    layered: Literal["psd", "ora"] | None = Field(
        default=None,
        description="Instead of a cut-out, a layered file for designers: `psd` (Photoshop) or "
        "`ora` (OpenRaster): one layer per part, `main` on top, a part not in `layers` hidden, "
        "and the source as a hidden `original` layer at the bottom.")


class RecomposeView(BaseModel):
    output: Output
    layers: list[dict[str, Any]] = Field(
        description="The job's `result.layers`, each part with `shown` (bool) added.")
    bytes: int
    content_type: str
    result: dict[str, Any] = Field(
        description="What the recomposition records: bbox, foreground_fraction, empty, "
        "output_size, crop_box, shown.")


class ProblemView(BaseModel):
    """RFC 9457 problem details; ``code`` is stable, ``detail`` is for people."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ProblemView, "description": "A problem (RFC 9457).",
                "content": {"application/problem+json": {}}} for s in statuses}


# (minutes left at most, priority): a job due soon overtakes the bulk queue.
DEADLINE_STEPS = ((15, 10), (60, 7), (6 * 60, 5), (24 * 60, 2))


def priority_for_deadline(deadline: datetime, now: datetime) -> int:
    """The priority a deadline stands for: 10 within 15 minutes, 7 within the hour, 5 within
    six hours, 2 within the day, 0 later."""
    minutes = (deadline - now).total_seconds() / 60
    return next((p for limit, p in DEADLINE_STEPS if minutes <= limit), 0)
