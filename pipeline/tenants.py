"""Tenants: who may submit what. Pure: API key format and hashing, the source allowlist.

An API key is ``clp_`` followed by 32 random URL-safe characters. Only its SHA-256 is stored,
so a leaked database does not leak working keys; the key is shown once, when it is created.
A tenant's allowlist is a list of ``bucket/prefix`` entries; a source is allowed when its
``bucket/key`` starts with one of them (``photos/`` allows the whole bucket). No allowlist at
all (None) allows every source: the default tenant of a single-team install.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.fields import BUCKET, SOURCE_RULE, TENANT, text_problem

KEY_PREFIX = "clp_"


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    allowed_sources: tuple[str, ...] | None


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(24)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def valid_tenant_id(tenant_id: str) -> bool:
    """a-z 0-9 _ -, starting with a letter or digit, at most 64 (``pipeline.fields.TENANT``)."""
    return text_problem(tenant_id, TENANT) is None


def normalise_rule(rule: str) -> str:
    """``s3://photos/shoes`` or ``photos/shoes/`` → ``photos/shoes/``; a bare bucket gets its
    slash, so ``photos`` never matches ``photos-private``."""
    rule = SOURCE_RULE.check(rule).strip().removeprefix("s3://")
    bucket, _, prefix = rule.partition("/")
    if not bucket:
        raise ValueError(f"not a bucket/prefix rule: {rule!r}")
    BUCKET.check(bucket)
    return f"{bucket}/{prefix}" if prefix else f"{bucket}/"


def source_allowed(rules: Sequence[str] | None, bucket: str, key: str) -> bool:
    if rules is None:
        return True
    path = f"{bucket}/{key}"
    return any(path.startswith(rule) for rule in rules)
