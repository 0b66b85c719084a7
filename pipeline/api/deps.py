"""What the API is built from, and who is calling: API keys and rate limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import Depends, Request
from fastapi.requests import HTTPConnection
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from pipeline.api.problems import Problem
from pipeline.callback_address import Resolver
from pipeline.ports import Queue, SignedPut
from pipeline.settings import Settings
from pipeline.tenants import Tenant, hash_key


class SourceStore(Protocol):
    """The S3 operations the API needs (``S3Store`` has them); ``put`` writes recompositions
    and uploads, ``presign_put`` hands out uploads' PUT URLs."""

    def get(self, bucket: str, key: str, *, version: str | None = None) -> bytes: ...

    def put(self, bucket: str, key: str, data: bytes, *, content_type: str,
            metadata: Mapping[str, str] | None = None) -> None: ...

    def list_keys(self, bucket: str, prefix: str = "") -> Iterable[str]: ...

    def presign(self, bucket: str, key: str, expires: int = 3600) -> str: ...

    def presign_put(self, bucket: str, key: str, *, content_type: str, size: int,
                    sha256: str | None = None, expires: int = 900) -> SignedPut: ...


class RateLimiter:
    """A token bucket per API key: ``rate`` requests per second on average, ``burst`` at once.

    In process memory: with several API processes each allows the rate, which is the usual
    trade-off for not putting a shared counter on every request's path."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go on, else the seconds until it may."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


@dataclass
class ApiDeps:
    settings: Settings
    ledger: Any  # SqlLedger: the ledger operations the routes call
    tenants: Any  # TenantStore
    queue: Queue
    store: SourceStore | None = None
    # Resolves callback hosts at submit time (``pipeline.callback_address.Resolver``); None:
    # literal addresses are checked here and names only at delivery.
    resolve: Resolver | None = None
    limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.settings.api_rate_per_second, self.settings.api_rate_burst)


def deps(request: Request) -> ApiDeps:
    found: ApiDeps = request.app.state.deps
    return found


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")

TENANT_SCOPE_KEY = "clipline.tenant"  # the door (``pipeline.api.door``) puts the caller here


def _key(bearer: HTTPAuthorizationCredentials | None, header: str | None) -> str | None:
    return bearer.credentials if bearer else header


async def presented_key(conn: HTTPConnection) -> str | None:
    """The API key a request presents, read by the same schemes the OpenAPI contract names."""
    return _key(await _bearer(conn), await _header(conn))


def authenticate(d: ApiDeps, key: str | None) -> Tenant:
    """The tenant of ``key``; 401 without a live key, 429 over the key's rate. Blocking (the
    key's lookup): call it from a thread, never on the event loop."""
    if not key:
        raise Problem(401, "unauthorized", "An API key is required",
                      "send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`")
    found = d.tenants.tenant_for_key(key)
    if found is None:
        raise Problem(401, "unauthorized", "The API key is not valid")
    wait = d.limiter.take(hash_key(key))
    if wait:
        raise Problem(429, "rate_limited", "Too many requests",
                      f"retry in {wait:.1f} s", retry_after=round(wait, 1))
    return found  # type: ignore[no-any-return]


def tenant(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
    header: str | None = Depends(_header),
    d: ApiDeps = Depends(deps),
) -> Tenant:
    """The tenant of the caller's API key. The door authenticates every request under /v1
    before its body is read; a route outside its reach is authenticated here, the same way."""
    found: Tenant | None = request.scope.get(TENANT_SCOPE_KEY)
    return found if found is not None else authenticate(d, _key(bearer, header))
