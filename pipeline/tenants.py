"""Tenants: who may submit what. Pure: API key format and hashing, the source allowlist.

An API key is ``clp_`` followed by 32 random URL-safe characters. Only its SHA-256 is stored,
so a leaked database does not leak working keys; the key is shown once, when it is created.

Sources are denied by default. A tenant's allowlist is a list of ``bucket/prefix`` entries; a
source is allowed when its ``bucket/key`` starts with one of them (``photos/`` allows the whole
bucket). No entries means no source at all. Outputs have an allowlist of the same form
(``allowed_outputs``, see ``pipeline.output_keys``). Every source is allowed only when the operator
said so for that tenant (``allow_any``, ``clipline tenants create ID --allow-any``): a stored,
visible choice, logged (``allow_any_used``) each time a door relies on it. Without it, a
tenant's key would lend the service's own storage credentials to whoever holds it.

Images a tenant uploads itself (``pipeline.uploads``) live in the service's upload area,
``<bucket>/<prefix>/<tenant>/<name>``. There the rule is fixed, whatever a tenant's allowlist
or ``allow_any`` says: a tenant may read its own uploads, and never another tenant's.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from pipeline import logs
from pipeline.fields import BUCKET, SOURCE_RULE, TENANT, text_problem

KEY_PREFIX = "clp_"
log = logs.get(__name__)


@dataclass(frozen=True, slots=True)
class Tenant:
    """A tenant as the doors see it. ``allowed_sources`` are normalised rules; ``allow_any``
    (a deliberate choice) allows every source whatever the rules say."""

    id: str
    name: str
    allowed_sources: tuple[str, ...] = ()
    allow_any: bool = False
    allowed_outputs: tuple[str, ...] = ()
    """``bucket/prefix`` rules where the tenant may have cut-outs written, beyond its own area
    of the service's bucket (``pipeline.output_keys``); ``allow_any`` never extends to them."""

    def describe_sources(self) -> str:
        """One line for people: what this tenant may read."""
        if self.allow_any:
            return "every source (--allow-any)"
        if not self.allowed_sources:
            return "no source (add one with --allow bucket/prefix)"
        return ", ".join(self.allowed_sources)

    def describe_outputs(self) -> str:
        """One line for people: where this tenant may have cut-outs written."""
        own = "its own area of the service's bucket"
        return ", ".join((own, *self.allowed_outputs))


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def valid_tenant_id(tenant_id: str) -> bool:
    """a-z 0-9 _ -, starting with a letter or digit, at most 64 (``pipeline.fields.TENANT``)."""
    return text_problem(tenant_id, TENANT) is None


def normalise_rule(rule: str) -> str:
    """``s3://photos/shoes/`` → ``photos/shoes/``; a bare bucket gets its slash, so ``photos``
    never matches ``photos-private``. A prefix keeps what it was given: ``photos/shoes`` stays,
    and ``covers`` reads it on segment boundaries (never ``photos/shoes-private/``).

    Raises ``InvalidField`` (a ``ValueError``) for a rule that is not ``bucket/prefix``."""
    rule = SOURCE_RULE.check(rule).strip().removeprefix("s3://")
    bucket, _, prefix = rule.partition("/")
    if not bucket:
        raise ValueError(f"not a bucket/prefix rule: {rule!r}")
    BUCKET.check(bucket)
    return f"{bucket}/{prefix}" if prefix else f"{bucket}/"


@dataclass(frozen=True, slots=True)
class UploadArea:
    """Where uploaded images live: ``bucket/prefix/<tenant>/<name>``, one flat name each."""

    bucket: str
    prefix: str
    """The key prefix, without a slash at either end (``uploads``)."""

    def key(self, tenant_id: str, name: str) -> str:
        """The key of upload ``name`` (a digest or a random id: no ``/``) of the tenant."""
        return f"{self.prefix}/{tenant_id}/{name}"

    def holds(self, bucket: str, key: str) -> bool:
        """Whether ``bucket/key`` lies in the area (anyone's part of it)."""
        return bucket == self.bucket and key.startswith(f"{self.prefix}/")

    def owns(self, tenant_id: str, bucket: str, key: str) -> bool:
        """Whether ``bucket/key`` is one of the tenant's own uploads: directly under its folder,
        one name, not ``.`` or ``..`` (a folder store would resolve those)."""
        name = key.removeprefix(self.key(tenant_id, ""))
        return (bucket == self.bucket and name != key and name not in ("", ".", "..")
                and "/" not in name)


def source_allowed(tenant: Tenant, bucket: str, key: str,
                   uploads: UploadArea | None = None) -> bool:
    """True when ``tenant`` may have Clipline read ``bucket/key`` (or list under it). In the
    upload area ``uploads``: only its own uploads (``UploadArea.owns``), whatever else it was
    given. Elsewhere: an allowlist entry covers it, or the tenant was deliberately given every
    source. No entries and no ``allow_any``: nothing is allowed."""
    if uploads is not None and uploads.holds(bucket, key):
        return uploads.owns(tenant.id, bucket, key)
    if tenant.allow_any:
        return True
    path = f"{bucket}/{key}"
    return any(covers(rule, path) for rule in tenant.allowed_sources)


def covers(rule: str, path: str) -> bool:
    """Whether the normalised ``rule`` covers ``bucket/key`` ``path``: a rule ending in ``/``
    everything under it; any other rule that exact key and what lies under it as a folder,
    on a segment boundary (``photos/shoes`` covers ``photos/shoes/a.jpg``, not
    ``photos/shoes-private/a.jpg``)."""
    if rule.endswith("/"):
        return path.startswith(rule)
    return path == rule or path.startswith(rule + "/")


def note_allow_any(tenant: Tenant, door: str, source: str) -> None:
    """Log that ``door`` let ``tenant`` read ``source`` only because of its ``allow_any``."""
    if tenant.allow_any:
        log.info("allow_any_used", tenant=tenant.id, door=door, source=source)
