"""Clipline's one error hierarchy.

Every failure that reaches the ledger is one of two kinds, and nothing else decides retry::

    ClipError                      reason code + human message
    ├── TransientError             retry with backoff (until max_attempts is spent)
    │   │                          the first five are outages (``outage``): see below
    │   ├── StorageUnavailable     storage_unavailable   S3 5xx, throttling, connection reset
    │   ├── InferenceUnavailable   inference_unavailable Triton down, model not ready
    │   ├── LedgerUnavailable      ledger_unavailable    database connection lost
    │   ├── BrokerUnavailable      broker_unavailable    Redis down: a message was not sent
    │   ├── EventSourceUnavailable event_source_unavailable  SQS queue of S3 events down
    │   ├── OperationTimeout       timeout               any I/O past its deadline
    │   └── UnexpectedError        unexpected_error      a bug or an unforeseen exception
    └── PermanentError             dead letter at once
        ├── ObjectMissing          object_missing        404 / no such file
        ├── ObjectDeleted          object_deleted        S3 answers with a delete marker
        ├── ObjectChanged          object_changed        overwritten since the event (If-Match)
        ├── ObjectArchived         object_archived       in an archive storage class: restore first
        ├── AccessDenied           access_denied         403, KMS key disabled or refused
        ├── OutputBucketMissing    output_bucket_missing the output bucket does not exist
        ├── StorageRefused         storage_refused       any other 4xx: the request cannot succeed
        ├── ObjectTooLarge         object_too_large      more bytes than the cap
        ├── NotAnImage             not_an_image          empty, text, unknown bytes
        ├── UnsupportedFormat      unsupported_format    a real image outside the allowlist
        ├── CorruptImage           corrupt_image         truncated or damaged data
        ├── TooManyPixels          too_many_pixels       over the pixel limit (decompression bomb)
        ├── UnsupportedMode        unsupported_mode      a pixel mode we cannot convert
        ├── EmptyMask              empty_mask            nothing found, and the caller was strict
        ├── InvalidOptions         invalid_options       output options that cannot be honoured
        ├── InvalidLayers          invalid_layers        layers a layered file cannot hold
        ├── OutputCollision        output_collision      the output file belongs to another source
        ├── OutputNameTooLong      output_name_too_long  the file system refuses the output's name
        ├── ModelError             model_error           missing file, wrong checksum, bad graph
        ├── UnknownLayer           unknown_layer         recompose: a part id the mask does not have
        └── ModelNotServed         model_not_served      the job's model is not served here

An *outage* is a transient failure that says a shared dependency is down rather than that the
job is at fault. It does not spend the job's attempts: the job waits out the outage, up to the
outage budget (``pipeline.retry``). A timeout raised for a job's own time limit is not one
(``OperationTimeout(..., outage=False)``).

Vendor exceptions (botocore, tritonclient, sqlalchemy, PIL) are translated into these once, at the
adapter that called the vendor, with ``raise ... from exc``.

Ledger refusals are not job failures: they tell a caller that the state it assumed is gone.
``LeaseLost`` (a stale or foreign lease token), ``JobNotFound``, ``TransitionRefused`` and the
two refusals to recompose a job (``JobNotSucceeded``, ``LayersNotRecorded``; see
``pipeline.recompose``) derive from ``LedgerRefusal``.

Requests refused before any job exists derive from ``UsageError`` (nothing recorded, nothing
to retry): bad settings, fields, manifests, cursors and events; output destinations that
are malformed (``InvalidDestination``), outside the tenant's allowed outputs
(``OutputNotAllowed``) or that collide within one submission (``DestinationCollision``, see
``pipeline.output_keys``); ``OpenTenantsUndecided`` (an
upgrade that must be told what open tenants become), ``CallbackRefused`` (a callback
address inside the network, ``pipeline.callback_address``) and ``ModelExists`` (registering a
trained model under a name, or a Triton version, that is taken: ``pipeline.model_store``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class ClipError(Exception):
    """Base of every failure Clipline records against a job."""

    reason: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "internal error"
    transient: ClassVar[bool] = False
    outage_default: ClassVar[bool] = False

    def __init__(self, message: str | None = None, *, outage: bool | None = None) -> None:
        self.message = message or self.default_message
        # A shared dependency is down (not the job's fault): see the module docstring.
        self.outage = self.outage_default if outage is None else outage
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reason={self.reason!r}, message={self.message!r})"


class TransientError(ClipError):
    """Worth another attempt after a backoff."""

    reason = "transient_error"
    default_message = "temporary failure"
    transient = True


class PermanentError(ClipError):
    """Will fail the same way every time: dead-letter at once."""

    reason = "permanent_error"
    default_message = "permanent failure"
    transient = False


# -- transient leaves -------------------------------------------------------------------------


class StorageUnavailable(TransientError):
    reason = "storage_unavailable"
    outage_default = True
    default_message = "object storage did not answer or answered with a server error"


class InferenceUnavailable(TransientError):
    reason = "inference_unavailable"
    outage_default = True
    default_message = "the inference server or its model is not available"


class LedgerUnavailable(TransientError):
    reason = "ledger_unavailable"
    outage_default = True
    default_message = "the job ledger's database is not reachable"


class BrokerUnavailable(TransientError):
    reason = "broker_unavailable"
    outage_default = True
    default_message = "the message broker is not reachable"


class EventSourceUnavailable(TransientError):
    reason = "event_source_unavailable"
    default_message = "the queue of S3 event notifications is not reachable"


class OperationTimeout(TransientError):
    reason = "timeout"
    outage_default = True
    default_message = "an operation ran past its deadline"


class UnexpectedError(TransientError):
    """An exception no adapter translated: most likely a bug. Retried (it may be a passing
    condition nobody foresaw) until the attempts are spent, then dead-lettered for a person."""

    reason = "unexpected_error"
    default_message = "an unexpected error"


# -- permanent leaves -------------------------------------------------------------------------


class ObjectMissing(PermanentError):
    reason = "object_missing"
    default_message = "the source object does not exist"


class ObjectDeleted(PermanentError):
    """The source was deleted in a versioned bucket: S3 answers with a delete marker (404 with
    ``x-amz-delete-marker: true``, or 405 to a read pinned to the marker's own version). The
    earlier versions remain: removing the marker brings the object back."""

    reason = "object_deleted"
    default_message = "the source object was deleted (its version is a delete marker)"


class ObjectChanged(PermanentError):
    """The job pinned the source by its ETag (``If-Match``) and it was overwritten since; the
    overwrite has an event, so a job, of its own. Redriving cannot help."""

    reason = "object_changed"
    default_message = "the source object was overwritten after the job was made"


class ObjectArchived(PermanentError):
    """The source is in an archive storage class (S3 Glacier Flexible Retrieval, Deep Archive,
    an Intelligent-Tiering archive tier): it must be restored before it can be read."""

    reason = "object_archived"
    default_message = "the source object is archived and must be restored before it can be read"


class AccessDenied(PermanentError):
    reason = "access_denied"
    default_message = "access to the object was denied"


class OutputBucketMissing(PermanentError):
    reason = "output_bucket_missing"
    default_message = "the output bucket does not exist"


class StorageRefused(PermanentError):
    """Object storage refused the request for a reason no other leaf names (a malformed version
    id, an invalid argument, an unknown 4xx): the message carries S3's status and code."""

    reason = "storage_refused"
    default_message = "object storage refused the request"


class ObjectTooLarge(PermanentError):
    reason = "object_too_large"
    default_message = "the source object is larger than the byte limit"


class NotAnImage(PermanentError):
    reason = "not_an_image"
    default_message = "the data is not an image"


class UnsupportedFormat(PermanentError):
    reason = "unsupported_format"
    default_message = "the image format is not supported"


class CorruptImage(PermanentError):
    reason = "corrupt_image"
    default_message = "the image data is truncated or corrupt"


class TooManyPixels(PermanentError):
    reason = "too_many_pixels"
    default_message = "the image has more pixels than the limit"


class UnsupportedMode(PermanentError):
    reason = "unsupported_mode"
    default_message = "the image's pixel mode cannot be converted"


class EmptyMask(PermanentError):
    reason = "empty_mask"
    default_message = "no subject was found in the image"


class InvalidOptions(PermanentError):
    reason = "invalid_options"
    default_message = "the output options are invalid"


class InvalidLayers(PermanentError):
    """Layers that a layered file (``pipeline.imaging.layered``) cannot hold: none, sizes or
    shapes that differ, a name empty, repeated or unprintable, a canvas over the format's limit."""

    reason = "invalid_layers"
    default_message = "the layers cannot be written as a layered file"


class OutputCollision(PermanentError):
    """The output name is taken by another source's cut-out (or a folder is in the way):
    writing would overwrite it, so the job fails instead (see ``pipeline.run_names``)."""

    reason = "output_collision"
    default_message = "the output file belongs to another source"


class OutputNameTooLong(PermanentError):
    reason = "output_name_too_long"
    default_message = "the output's file name is longer than the file system allows"


class ModelError(PermanentError):
    reason = "model_error"
    default_message = "the segmentation model is missing or invalid"


class UnknownLayer(PermanentError):
    """A recompose asked for a part id that the job's layers mask does not have."""

    reason = "unknown_layer"
    default_message = "no part of the mask has that id"


class ModelNotServed(PermanentError):
    """The job names a model this deployment (or this worker) does not serve: dead at once, and
    re-drivable once a worker serves it (``CLIPLINE_SERVED_MODELS``)."""

    reason = "model_not_served"
    default_message = "the job's model is not served here"


# -- ledger refusals --------------------------------------------------------------------------


class LedgerRefusal(Exception):
    """The ledger refused an operation because the job is not in the state the caller assumed."""

    reason: ClassVar[str] = "refused"
    subject: ClassVar[str] = "job"

    def __init__(self, job_id: object, message: str) -> None:
        self.job_id = job_id
        self.message = message
        super().__init__(f"{self.subject} {job_id}: {message}")


class JobNotFound(LedgerRefusal):
    reason = "not_found"


class BatchNotFound(LedgerRefusal):
    reason = "batch_not_found"
    subject = "batch"


class LeaseLost(LedgerRefusal):
    """The lease token is stale: another attempt owns the job now, or it has finished."""

    reason = "lease_lost"


class TransitionRefused(LedgerRefusal):
    """The job's status does not allow the asked-for transition (e.g. cancelling a finished job)."""

    reason = "transition_refused"


class JobNotSucceeded(LedgerRefusal):
    """Recompose needs a job that has succeeded (its output and mask exist)."""

    reason = "job_not_succeeded"


class LayersNotRecorded(LedgerRefusal):
    """Recompose needs a job that was run with the option ``layers`` (its mask was stored)."""

    reason = "layers_not_recorded"


PERMANENT_REASONS: frozenset[str] = frozenset(
    cls.reason for cls in PermanentError.__subclasses__()
)
TRANSIENT_REASONS: frozenset[str] = frozenset(
    cls.reason for cls in TransientError.__subclasses__()
)


class IdempotencyConflict(LedgerRefusal):
    """The idempotency key is already used by a job made from a different request: ``fields``
    names what differs (``source.key``, ``options.format``, ``priority``, ``callback_url``...)."""

    reason = "idempotency_conflict"

    def __init__(self, job_id: object, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(job_id, message)
        self.fields = list(fields)


class UsageError(Exception):
    """A request refused before any job exists: nothing was recorded, so nothing is lost."""

    reason = "usage_error"


class InvalidSettings(UsageError):
    """The settings cannot run what was asked (a worker with no output bucket, say)."""

    reason = "invalid_settings"


class InvalidCursor(UsageError):
    """A paging cursor that the ledger did not make (``pipeline.paging``)."""

    reason = "invalid_cursor"


class InvalidManifest(UsageError):
    """A manifest line that is not a job; the whole manifest is refused."""

    reason = "invalid_manifest"


class InvalidField(UsageError, ValueError):
    """A field of a request, a manifest line, an event or a file name that the ledger cannot
    hold (see ``pipeline.fields``): ``field`` names it. A ``ValueError`` too, so validators
    (pydantic's, the manifest parsers') report it where they report other bad values."""

    reason = "invalid_field"

    def __init__(self, field: str, problem: str) -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{field}: {problem}")


class UnstorableValue(UsageError):
    """The database refused a value of a request (the last line behind ``pipeline.fields``)."""

    reason = "invalid_value"


class LedgerDamaged(UsageError):
    """The ledger's file cannot be read as a database (an embedded run's SQLite file)."""

    reason = "ledger_damaged"


class InvalidEvent(UsageError):
    """A storage event notification that is not one Clipline understands (nothing submitted)."""

    reason = "invalid_event"


class OpenTenantsUndecided(UsageError):
    """Migration 0007 found tenants that may read every source today (no allowlist) and was not
    told whether they keep it (``--open-tenants allow-any``) or lose it (``deny``)."""

    reason = "open_tenants_undecided"


class CallbackRefused(UsageError):
    """A callback URL whose address Clipline will not call (``pipeline.callback_address``): a
    loopback, private, link-local, unique-local, multicast, unspecified or reserved address,
    given literally or resolved from the name. ``why`` is that kind (``private``, ...)."""

    reason = "callback_address_refused"

    def __init__(self, message: str, why: str) -> None:
        self.why = why
        super().__init__(message)


class ModelExists(UsageError):
    """A trained model cannot be registered under this name: a built-in model has it, or a
    registered one does and replacing it was not asked for; or a Triton model repository
    already holds that version (``pipeline.model_store``)."""

    reason = "model_exists"


class InvalidDestination(UsageError):
    """An output destination that cannot be used (``pipeline.output_keys``): a bad bucket name,
    a key template with an unknown placeholder or an unbalanced brace, or a resolved key that
    is empty, too long, has an empty, ``.`` or ``..`` segment, or would overwrite its source."""

    reason = "invalid_output"


class OutputNotAllowed(UsageError):
    """An output outside the tenant's own area and its ``allowed_outputs`` rules."""

    reason = "output_not_allowed"


class DestinationCollision(UsageError):
    """Two different jobs of one submission would write the same output object."""

    reason = "output_key_collision"
