"""Tenants and their API keys in the ledger's database."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from pipeline.adapters.ledger.database import translated
from pipeline.adapters.ledger.schema import api_keys, tenants
from pipeline.clock import SystemClock
from pipeline.jobs import new_id
from pipeline.ports import Clock
from pipeline.tenants import Tenant, hash_key, new_api_key, normalise_rule, valid_tenant_id


class TenantStore:
    def __init__(self, engine: Engine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def save(self, tenant_id: str, name: str | None = None,
             allowed_sources: Sequence[str] | None = None, *,
             allow_any: bool | None = None,
             allowed_outputs: Sequence[str] | None = None) -> Tenant:
        """Create the tenant, or change only what is named; returns the tenant as stored.

        ``None`` keeps what is stored (a new tenant: its id as name, no sources, not
        ``allow_any``). ``allowed_sources`` (``[]`` clears them) are then exactly what the
        tenant may read, so they also turn ``allow_any`` off; ``allow_any`` alone sets or
        clears the deliberate "every source" and keeps the rules. ``allowed_outputs`` (``[]``
        clears them) replace where, beyond its own area, the tenant may have cut-outs written.
        Keys and the callback secret are never touched here.

        Raises ``ValueError`` (``InvalidField`` for a bad field) for a bad id or rule, or for
        sources together with ``allow_any=True``; ``LedgerUnavailable`` when the database is
        down."""
        if not valid_tenant_id(tenant_id):
            raise ValueError(f"tenant ids are 1-64 of a-z 0-9 _ - (got {tenant_id!r})")
        if allowed_sources is not None and allow_any:
            raise ValueError("give allowed sources or allow_any, not both")
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name
        if allowed_sources is not None:
            changes["allowed_sources"] = [normalise_rule(r) for r in allowed_sources]
            changes["allow_any"] = False
        if allow_any is not None:
            changes["allow_any"] = allow_any
        if allowed_outputs is not None:
            changes["allowed_outputs"] = [normalise_rule(r) for r in allowed_outputs]
        stmt = self._insert(tenants).values(
            id=tenant_id, name=name or tenant_id,
            allowed_sources=changes.get("allowed_sources", []),
            allow_any=changes.get("allow_any", False),
            allowed_outputs=changes.get("allowed_outputs", []),
            callback_secret=secrets.token_hex(32))
        # An existing tenant keeps whatever this call does not name: its rules, its keys and
        # its callback secret (receivers already verify with it).
        stmt = (stmt.on_conflict_do_update(index_elements=["id"], set_=changes) if changes
                else stmt.on_conflict_do_nothing(index_elements=["id"]))
        with translated(), self.engine.begin() as conn:
            conn.execute(stmt)
            row = conn.execute(select(tenants).where(tenants.c.id == tenant_id)).one()
        return _tenant(row)

    def get(self, tenant_id: str) -> Tenant | None:
        with translated(), self.engine.connect() as conn:
            row = conn.execute(select(tenants).where(tenants.c.id == tenant_id)).first()
        return _tenant(row) if row else None

    def callback_secret(self, tenant_id: str) -> str | None:
        """The key that signs the tenant's completion callbacks."""
        query = select(tenants.c.callback_secret).where(tenants.c.id == tenant_id)
        with translated(), self.engine.connect() as conn:
            secret: str | None = conn.execute(query).scalar()
        return secret

    def create_key(self, tenant_id: str, label: str | None = None) -> tuple[uuid.UUID, str]:
        """A new key for the tenant: (its id, the key). The key is not stored, only its hash."""
        key, key_id = new_api_key(), new_id()
        with translated(), self.engine.begin() as conn:
            conn.execute(insert(api_keys).values(
                id=key_id, tenant_id=tenant_id, key_hash=hash_key(key), label=label,
                created_at=self.clock.now()))
        return key_id, key

    def revoke_key(self, key_id: uuid.UUID) -> bool:
        with translated(), self.engine.begin() as conn:
            done = conn.execute(update(api_keys)
                                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                                .values(revoked_at=self.clock.now()))
        return bool(done.rowcount)

    def tenant_for_key(self, key: str) -> Tenant | None:
        """The tenant a live key belongs to; None for an unknown or revoked key."""
        query = (select(tenants).join(api_keys, api_keys.c.tenant_id == tenants.c.id)
                 .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)))
        with translated(), self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _tenant(row) if row else None

    def keys(self, tenant_id: str) -> list[dict[str, Any]]:
        query = select(api_keys.c.id, api_keys.c.label, api_keys.c.created_at,
                       api_keys.c.revoked_at).where(api_keys.c.tenant_id == tenant_id)
        with translated(), self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(api_keys.c.id))]


def _tenant(row: Any) -> Tenant:
    # No rules stored (NULL, or JSON null from before migration 0007) is no source at all.
    return Tenant(row.id, row.name, tuple(row.allowed_sources or ()), bool(row.allow_any),
                  tuple(row.allowed_outputs or ()))
