"""Job and batch values, the job status machine, and idempotency keys. Pure: no I/O.

Status machine (``TRANSITIONS``)::

    queued ──claim──► running ──complete──► succeeded
      ▲  │               │ ├──fail(transient, attempts left) / reap──► queued
      │  │               │ └──fail(permanent) / attempts spent ──────► dead ──redrive──► queued
      │  └──cancel──► cancelled ◄──cancel──┘
      └──────────────────────────────────────────────────────────────────┘

``succeeded``, ``dead`` and ``cancelled`` are terminal; only ``dead`` can be re-driven.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from json.encoder import encode_basestring
from typing import Any

from pipeline.models import DEFAULT_MODEL


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED})

TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.QUEUED, JobStatus.DEAD, JobStatus.CANCELLED}
    ),
    JobStatus.DEAD: frozenset({JobStatus.QUEUED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

LEASE_EXPIRED = "lease_expired"
"""Reason code recorded when a worker stopped heart-beating (it died or hung)."""
LEASE_EXPIRED_MESSAGE = "the worker's lease expired before it finished (it died or hung)"

DEFAULT_TENANT = "default"
DERIVED_KEY_PREFIX = "h:"
"""Keys made by ``dedupe_key_of``: the ledger's own, and an S3 event's (identity + sequencer)."""


def allowed(src: JobStatus, dst: JobStatus) -> bool:
    return dst in TRANSITIONS[src]


def new_id() -> uuid.UUID:
    """A time-ordered UUID (version 7 layout): new rows land at the right edge of the index."""
    return uuid.UUID(new_id_text())


def new_id_text() -> str:
    """``new_id()`` as text, made without integer arithmetic: bulk inserts make millions."""
    stamp = f"{time.time_ns() // 1_000_000 & 0xFFFFFFFFFFFF:012x}"
    rand = os.urandom(10).hex()
    variant = "89ab"[int(rand[3], 16) & 3]  # RFC 4122 variant: the top bits are 10
    return f"{stamp[:8]}-{stamp[8:]}-7{rand[:3]}-{variant}{rand[4:7]}-{rand[7:19]}"


def canonical_json(value: Any) -> str:
    """The one serialisation used for hashing: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def identity_text(
    bucket: str, key: str, version: str | None, options_json: str, model: str,
    output: tuple[str | None, str | None] | None = None,
) -> str:
    """``canonical_json([bucket, key, version, options, model])``, given the options already
    serialised canonically, so a manifest's shared options are serialised once, not per line.
    A job with an output destination (``output``: its bucket and resolved key) has them as a
    sixth member, so the same source sent to two places is two jobs, while the identity of a
    job without one is what it always was."""
    quote = encode_basestring
    ver = "null" if version is None else quote(version)
    text = f"[{quote(bucket)},{quote(key)},{ver},{options_json},{quote(model)}"
    if output is None:
        return text + "]"
    out_bucket, out_key = ("null" if v is None else quote(v) for v in output)
    return f"{text},[{out_bucket},{out_key}]]"


def dedupe_key_of(identity: str) -> str:
    """A derived idempotency key: 144 bits of SHA-256, base64url. Short keys keep the unique
    index small enough to stay in memory when a manifest of millions is inserted."""
    digest = hashlib.sha256(identity.encode()).digest()[:18]
    return DERIVED_KEY_PREFIX + base64.urlsafe_b64encode(digest).decode()


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a producer asks for; the ledger turns it into a job row."""

    bucket: str
    key: str
    version: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    model: str = DEFAULT_MODEL
    priority: int = 0
    idempotency_key: str | None = None
    deadline: datetime | None = None
    """When the client gave a deadline instead of a priority (``priority`` is then derived from
    it): kept so that an explicit idempotency key compares the deadline as sent."""
    output_bucket: str | None = None
    """Where the cut-out goes (``pipeline.output_keys``); None: the service's output bucket."""
    output_key: str | None = None
    """The resolved output key; None: the default key, ``<prefix>/<tenant>/<job id>.<ext>``."""

    @property
    def output(self) -> tuple[str | None, str | None] | None:
        """(output bucket, output key), or None when the job goes to the default place."""
        if self.output_bucket is None and self.output_key is None:
            return None
        return self.output_bucket, self.output_key

    def dedupe_key(self) -> str:
        """The explicit idempotency key, or one derived from everything that shapes the output.

        Two specs with the same source (bucket, key, version), normalised options and model are
        the same job, so a re-sent event or a re-submitted manifest line folds into the first.
        """
        if self.idempotency_key:
            return self.idempotency_key
        return dedupe_key_of(self.identity())

    @property
    def explicit_key(self) -> bool:
        """Whether the idempotency key is the client's own (an ``Idempotency-Key`` header, a
        manifest's ``idempotency_key``), which stands for the whole request, rather than one
        derived from the source, options and model (``DERIVED_KEY_PREFIX``)."""
        key = self.idempotency_key
        return key is not None and key != "" and not key.startswith(DERIVED_KEY_PREFIX)

    def identity(self, options_json: str | None = None) -> str:
        """Everything that shapes the output, canonically serialised (``options_json``: the
        options' ``canonical_json``, when the caller already has it)."""
        options = canonical_json(dict(self.options)) if options_json is None else options_json
        return identity_text(self.bucket, self.key, self.version, options, self.model,
                             self.output)

    def request(self, callback_url: str | None = None) -> dict[str, Any]:
        """The request as the client made it, canonically: what an explicit idempotency key
        stands for. Everything that shapes the job or its delivery is here, and a deadline is
        kept as the instant sent, not as the priority it stood for when it arrived."""
        deadline = None if self.deadline is None else self.deadline.astimezone(UTC).isoformat()
        return {
            "source": {"bucket": self.bucket, "key": self.key, "version": self.version},
            "options": dict(self.options), "model": self.model,
            "priority": None if self.deadline is not None else self.priority,
            "deadline": deadline, "callback_url": callback_url,
            "output": None if self.output is None else {"bucket": self.output_bucket,
                                                        "key": self.output_key},
        }


def request_differences(stored: Mapping[str, Any], sent: Mapping[str, Any]) -> list[str]:
    """The fields in which two ``JobSpec.request`` documents differ, sorted: a mapping field
    names its members (``source.key``, ``options.format``). A field the stored document lacks
    (a job recorded before requests were kept) is not compared."""
    found = []
    for name in sorted(stored.keys() & sent.keys()):
        old, new = stored[name], sent[name]
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            found += [f"{name}.{k}" for k in sorted(old.keys() | new.keys())
                      if old.get(k) != new.get(k)]
        elif old != new:
            found.append(name)
    return found


@dataclass(frozen=True, slots=True)
class Job:
    """A job row as the ledger returns it."""

    id: uuid.UUID
    tenant_id: str
    batch_id: uuid.UUID | None
    bucket: str
    key: str
    version: str | None
    options: Mapping[str, Any]
    model: str
    idempotency_key: str
    priority: int
    status: JobStatus
    attempts: int
    max_attempts: int
    not_before: datetime
    lease_token: uuid.UUID | None
    lease_expires_at: datetime | None
    leased_by: str | None
    last_error_code: str | None
    last_error_message: str | None
    result: Mapping[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    published_at: datetime | None = None
    callback_url: str | None = None
    callback_state: str | None = None  # pending, delivered, failed; None: no callback
    callback_attempts: int = 0
    callback_next_at: datetime | None = None
    outage_since: datetime | None = None  # a shared dependency has failed it since (retry.py)
    request: Mapping[str, Any] | None = None  # JobSpec.request(), for an explicit key only
    output_bucket: str | None = None  # None: the service's output bucket
    output_key: str | None = None  # resolved at submit; None: the default key


@dataclass(frozen=True, slots=True)
class ReapResult:
    requeued: int
    dead: int


@dataclass(frozen=True, slots=True)
class Dispatch:
    """A wake-up message to send for a queued job: Celery routes it by ``priority`` and holds it
    back ``delay`` seconds (a short retry backoff)."""

    job_id: uuid.UUID
    priority: int = 0
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Claim:
    """A job together with the lease that lets its holder finish it."""

    job: Job
    token: uuid.UUID
    expires_at: datetime

    @property
    def attempt(self) -> int:
        return self.job.attempts


@dataclass(frozen=True, slots=True)
class SubmitResult:
    job: Job
    created: bool


@dataclass(frozen=True, slots=True)
class BulkResult:
    batch_id: uuid.UUID | None
    received: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted


@dataclass(frozen=True, slots=True)
class BatchCounts:
    by_status: Mapping[JobStatus, int]
    dead_by_reason: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    def __getitem__(self, status: JobStatus) -> int:
        return self.by_status.get(status, 0)
