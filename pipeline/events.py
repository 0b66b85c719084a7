"""S3 event intake: "an object was created" notifications in, idempotent jobs out. Pure: no I/O.

``clipline events`` feeds this from an SQS queue; the HTTP API's webhook feeds it from MinIO or
EventBridge. Both go through the same four steps::

    parse_notification(body) → [ObjectCreated]      three shapes, one value (below)
    EventRules.match(bucket, key) → Rule            bucket + longest key prefix → tenant, options
    route / job_specs → [(tenant, JobSpec)]         + what was skipped, and why
    submit_events(...) → EventOutcome               ledger.submit each, then publish the new ones

Shapes understood by ``parse_notification``:

- **AWS S3** (SQS, or SNS → SQS): ``Records[].s3.bucket.name`` and ``.object.key``, ``size``,
  ``eTag``, ``versionId``, ``sequencer``; ``eventName`` ``ObjectCreated:*``. The key is encoded
  as in a form: ``+`` is a space, ``%2B`` a plus. The ``s3:TestEvent`` S3 sends when a bucket's
  notifications are configured names no object: an empty list.
- **MinIO** webhooks: the same records (``eventName`` with an ``s3:`` prefix), plus top-level
  ``EventName`` and ``Key``.
- **EventBridge** "Object Created": ``detail.bucket.name``, ``detail.object.key`` (not encoded),
  ``version-id``, ``sequencer``, ``etag``.

Other events (removals, restores, tagging) are ignored; anything else raises ``InvalidEvent``.

Idempotency: one job per *write* of an object, however often or late its event arrives.

- With a version id (a versioned bucket) the job's version is that id: the worker reads exactly
  that version, and the job folds with an API or manifest submission of the same version.
- Without one, the job's version is the object's ETag, quoted: the worker reads with
  ``If-Match``, so it cuts out the bytes the event announced (or fails ``object_changed`` if they
  were overwritten since; the overwrite has an event, so a job, of its own). The sequencer, S3's
  ordering of writes to one key, then goes into the job's idempotency key: a re-upload is a new
  write with a new sequencer, so a new job even when the bytes are the same, while the same event
  delivered twice or out of order carries the same sequencer and folds into the first job.
- The sequencer is never the version: S3 would refuse it as a ``VersionId``. With neither (some
  S3 look-alikes), the ETag alone decides, and re-uploading identical bytes folds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import unquote_plus

from pipeline import fields, json_limits, logs
from pipeline.errors import InvalidDestination, InvalidEvent, InvalidField, TransientError
from pipeline.event_rules import EventRules, Rule
from pipeline.intake import is_image_key
from pipeline.jobs import Dispatch, Job, JobSpec, SubmitResult, dedupe_key_of
from pipeline.output_keys import Placer, output_allowed, tenant_area
from pipeline.ports import Queue
from pipeline.tenants import Tenant, note_allow_any, source_allowed

log = logs.get(__name__)

# Why an event made no job (logged as ``event_skipped``, counted in the outcome).
NO_RULE = "no_rule"
NOT_AN_IMAGE = "not_an_image"
OWN_OUTPUT = "own_output"
UNKNOWN_TENANT = "unknown_tenant"
SOURCE_NOT_ALLOWED = "source_not_allowed"
OUTPUT_NOT_ALLOWED = "output_not_allowed"  # the rule's output is outside the tenant's
INVALID_OUTPUT = InvalidDestination.reason  # the rule's key template cannot place this key
INVALID_FIELD = InvalidField.reason  # a bucket, key or version the ledger cannot hold

MAX_NESTING = 2  # an SNS envelope around an S3 event; nothing nests deeper
MAX_EVENT_BYTES = 1024 * 1024  # SQS's largest message; S3, MinIO and EventBridge send far less


@dataclass(frozen=True, slots=True)
class ObjectCreated:
    bucket: str
    key: str  # decoded: the object's real key
    version_id: str | None = None
    sequencer: str | None = None
    size: int | None = None
    etag: str | None = None  # without quotes

    def spec(self, rule: Rule, *, output_prefix: str = "cutouts",
             output_bucket: str | None = None) -> JobSpec:
        """The job this write asks for under ``rule`` (see the module's idempotency notes),
        with the rule's output destination resolved for this key (``InvalidDestination`` when
        its template cannot place it). The tenant's output allowlist is checked when the
        tenant is known (``record_events``)."""
        version = self.version_id or (f'"{self.etag}"' if self.etag else None)
        spec = JobSpec(bucket=self.bucket, key=self.key, version=version, options=rule.options,
                       model=rule.model, priority=rule.priority)
        if rule.output is not None:
            spec = Placer(rule.output, rule.tenant, tenant=None, output_prefix=output_prefix,
                          own_bucket=output_bucket).place(spec)
        if self.version_id is None and self.sequencer:
            # '#' cannot end a canonical JSON identity: no derived key can equal this one.
            key = dedupe_key_of(f"{spec.identity()}#{self.sequencer}")
            return replace(spec, idempotency_key=key)
        return spec


# -- parsing ----------------------------------------------------------------------------------


def parse_notification(body: Mapping[str, Any] | str | bytes) -> list[ObjectCreated]:
    """The objects a notification says were created; [] for a test event or other events."""
    return _parse(body, depth=0)


def _parse(body: Mapping[str, Any] | str | bytes, depth: int) -> list[ObjectCreated]:
    doc = _document(body)
    if doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
        if depth >= MAX_NESTING:
            raise InvalidEvent("notification envelopes nested too deep")
        return _parse(doc["Message"], depth + 1)  # S3 → SNS → SQS without raw delivery
    if doc.get("Event") == "s3:TestEvent":
        return []
    if "Records" in doc:
        return _records(doc["Records"])
    if doc.get("source") == "aws.s3" and "detail" in doc:
        return _eventbridge(doc)
    raise InvalidEvent("not an S3, MinIO or EventBridge object event "
                       f"(top-level fields: {', '.join(sorted(map(str, doc))[:8]) or 'none'})")


def _document(body: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    if isinstance(body, str | bytes):
        try:
            body = json_limits.loads(body, max_bytes=MAX_EVENT_BYTES)
        except json_limits.JsonLimitExceeded as exc:
            raise InvalidEvent(f"not an event: {exc}") from None
        except ValueError as exc:  # UnicodeDecodeError included
            raise InvalidEvent(f"not JSON: {exc}") from exc
    if not isinstance(body, Mapping):
        raise InvalidEvent(f"expected a JSON object, got {type(body).__name__}")
    return body


def _records(records: Any) -> list[ObjectCreated]:
    if not isinstance(records, list):
        raise InvalidEvent("'Records' is not a list")
    found = []
    for n, record in enumerate(records):
        where = f"Records[{n}]"
        record = _mapping(record, where)
        # AWS writes "ObjectCreated:Put", MinIO "s3:ObjectCreated:Put".
        name = _text(record.get("eventName"), f"{where}.eventName").removeprefix("s3:")
        if not name.startswith("ObjectCreated:"):
            continue
        s3 = _mapping(record.get("s3"), f"{where}.s3")
        bucket = _mapping(s3.get("bucket"), f"{where}.s3.bucket")
        obj = _mapping(s3.get("object"), f"{where}.s3.object")
        found.append(ObjectCreated(
            bucket=_text(bucket.get("name"), f"{where}.s3.bucket.name"),
            key=unquote_plus(_text(obj.get("key"), f"{where}.s3.object.key")),
            version_id=_version(obj.get("versionId")),
            sequencer=_optional(obj.get("sequencer"), f"{where}.s3.object.sequencer"),
            size=_size(obj.get("size"), f"{where}.s3.object.size"),
            etag=_etag(obj.get("eTag"), f"{where}.s3.object.eTag"),
        ))
    return found


def _eventbridge(doc: Mapping[str, Any]) -> list[ObjectCreated]:
    if doc.get("detail-type") != "Object Created":
        return []
    detail = _mapping(doc.get("detail"), "detail")
    bucket = _mapping(detail.get("bucket"), "detail.bucket")
    obj = _mapping(detail.get("object"), "detail.object")
    return [ObjectCreated(
        bucket=_text(bucket.get("name"), "detail.bucket.name"),
        key=_text(obj.get("key"), "detail.object.key"),  # EventBridge does not encode keys
        version_id=_version(obj.get("version-id")),
        sequencer=_optional(obj.get("sequencer"), "detail.object.sequencer"),
        size=_size(obj.get("size"), "detail.object.size"),
        etag=_etag(obj.get("etag", obj.get("eTag")), "detail.object.etag"),
    )]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"{where}: expected an object")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidEvent(f"{where}: expected a non-empty string")
    return value


def _optional(value: Any, where: str) -> str | None:
    return None if value is None or value == "" else _text(value, where)


def _version(value: Any) -> str | None:
    # "null" is S3's id for a write to an unversioned bucket: it tells one write from no other.
    return None if value in (None, "", "null") else _text(value, "versionId")


def _etag(value: Any, where: str) -> str | None:
    etag = _optional(value, where)
    return etag.strip('"') or None if etag is not None else None


def _size(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidEvent(f"{where}: expected a byte count")
    return value


# -- routing and submission -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Skipped:
    bucket: str
    key: str
    reason: str
    tenant: str | None = None


@dataclass(frozen=True, slots=True)
class Routing:
    specs: list[tuple[str, JobSpec]]
    skipped: list[Skipped]


def route(records: Iterable[ObjectCreated], rules: EventRules, *,
          output_bucket: str | None = None, output_prefix: str = "cutouts",
          service_areas: Sequence[tuple[str, str]] = ()) -> Routing:
    """Each record to (tenant, spec) or to a skip reason. Cut-outs written under
    ``output_prefix/`` of ``output_bucket`` are never sources: a rule that covers the output
    area would otherwise cut out its own cut-outs, for ever. Nor is what the service writes
    elsewhere, ``service_areas`` as (bucket, key prefix) pairs: its previews and the uploads
    it stores (``Settings.service_areas``)."""
    own = output_prefix.strip("/") + "/" if output_prefix.strip("/") else ""
    specs, skipped = [], []
    for event in records:
        rule = rules.match(event.bucket, event.key)
        problem = _unstorable(event)
        if problem:
            reason = INVALID_FIELD
            log.warning("event_field_refused", bucket=fields.escaped(event.bucket, 80),
                        key=fields.escaped(event.key, 300), problem=problem)
            event = replace(event, bucket=fields.escaped(event.bucket, 80),
                            key=fields.escaped(event.key, 300))
        elif (event.bucket == output_bucket and event.key.startswith(own)) or any(
                event.bucket == b and event.key.startswith(p) for b, p in service_areas):
            reason = OWN_OUTPUT
        elif not is_image_key(event.key):
            reason = NOT_AN_IMAGE
        elif rule is None:
            reason = NO_RULE
        else:
            try:
                specs.append((rule.tenant, event.spec(rule, output_prefix=output_prefix,
                                                      output_bucket=output_bucket)))
                continue
            except InvalidDestination as exc:
                reason = INVALID_OUTPUT
                log.warning("event_output_refused", bucket=event.bucket,
                            key=fields.escaped(event.key, 300), problem=str(exc))
        skipped.append(Skipped(event.bucket, event.key, reason, rule.tenant if rule else None))
    return Routing(specs, skipped)


def _unstorable(event: ObjectCreated) -> str | None:
    """Why the ledger could not hold this event's job (``pipeline.fields``), or None."""
    version = event.version_id or event.etag
    for spec, value in ((fields.BUCKET, event.bucket), (fields.KEY, event.key),
                        (fields.VERSION, version)):
        problem = None if value is None else fields.text_problem(value, spec)
        if problem:
            return f"{spec.name}: {problem}"
    return None


def job_specs(records: Iterable[ObjectCreated], rules: EventRules, *,
              output_bucket: str | None = None, output_prefix: str = "cutouts",
              service_areas: Sequence[tuple[str, str]] = ()) -> list[tuple[str, JobSpec]]:
    """(tenant, spec) for every record that makes a job; see ``route`` for the others."""
    return route(records, rules, output_bucket=output_bucket, output_prefix=output_prefix,
                 service_areas=service_areas).specs


class SubmitLedger(Protocol):
    def submit(self, spec: JobSpec, *, tenant: str = ...) -> SubmitResult: ...


TenantLookup = Callable[[str], Tenant | None]


@dataclass(frozen=True, slots=True)
class EventOutcome:
    created: tuple[Job, ...] = ()
    existing: tuple[Job, ...] = ()  # the same write seen before: its job, unchanged
    skipped: tuple[Skipped, ...] = ()
    published: bool = True  # False: the broker refused; the reconciler publishes them later


def record_events(records: Iterable[ObjectCreated], rules: EventRules, ledger: SubmitLedger, *,
                  tenants: TenantLookup, output_bucket: str | None = None,
                  output_prefix: str = "cutouts",
                  service_areas: Sequence[tuple[str, str]] = ()) -> EventOutcome:
    """Submit a job per routed record; publish nothing. When this returns, every job is
    committed, so the notification may be deleted. A ledger failure propagates: keep it."""
    routing = route(records, rules, output_bucket=output_bucket, output_prefix=output_prefix,
                    service_areas=service_areas)
    created: list[Job] = []
    existing: list[Job] = []
    skipped = list(routing.skipped)
    known: dict[str, Tenant | None] = {}
    for tenant_id, spec in routing.specs:
        if tenant_id not in known:
            known[tenant_id] = tenants(tenant_id)
        tenant = known[tenant_id]
        if tenant is None or not source_allowed(tenant, spec.bucket, spec.key):
            reason = UNKNOWN_TENANT if tenant is None else SOURCE_NOT_ALLOWED
            skipped.append(Skipped(spec.bucket, spec.key, reason, tenant_id))
            continue
        area = tenant_area(output_prefix, tenant_id)
        if spec.output is not None and not output_allowed(
                tenant, spec.output_bucket, spec.output_key or area + "/", area):
            skipped.append(Skipped(spec.bucket, spec.key, OUTPUT_NOT_ALLOWED, tenant_id))
            continue
        note_allow_any(tenant, "events", f"s3://{spec.bucket}/{spec.key}")
        result = ledger.submit(spec, tenant=tenant_id)
        (created if result.created else existing).append(result.job)
    for skip in skipped:
        # Our own cut-outs are expected in a shared bucket: not worth a line each by default.
        level = log.debug if skip.reason == OWN_OUTPUT else log.info
        level("event_skipped", bucket=skip.bucket, key=skip.key, reason=skip.reason,
              tenant=skip.tenant)
    return EventOutcome(tuple(created), tuple(existing), tuple(skipped))


def publish_created(queue: Queue, jobs: Sequence[Job]) -> bool:
    """Wake workers for new jobs. A broker that is down loses nothing: the jobs are committed
    and the reconciler publishes queued jobs whose message went missing. False then."""
    if not jobs:
        return True
    try:
        queue.publish([Dispatch(job.id, job.priority) for job in jobs])
    except TransientError as exc:
        log.warning("events_publish_deferred", jobs=len(jobs), reason=exc.reason,
                    error=exc.message)
        return False
    return True


def submit_events(records: Iterable[ObjectCreated], rules: EventRules, ledger: SubmitLedger,
                  queue: Queue, *, tenants: TenantLookup, output_bucket: str | None = None,
                  output_prefix: str = "cutouts",
                  service_areas: Sequence[tuple[str, str]] = ()) -> EventOutcome:
    """``record_events``, then publish the jobs it created (the webhook's whole path)."""
    outcome = record_events(records, rules, ledger, tenants=tenants,
                            output_bucket=output_bucket, output_prefix=output_prefix,
                            service_areas=service_areas)
    return replace(outcome, published=publish_created(queue, outcome.created))
