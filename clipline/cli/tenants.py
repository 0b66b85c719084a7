"""``clipline tenants``: create tenants, set their S3 allowlist, issue and revoke API keys."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import typer

from pipeline import fields
from pipeline.errors import InvalidField, UsageError
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.adapters.ledger.tenants import TenantStore

app = typer.Typer(help="Tenants and their API keys (for `clipline api`).", no_args_is_help=True)


def _store() -> TenantStore:
    from pipeline.adapters.ledger.database import make_engine
    from pipeline.adapters.ledger.tenants import TenantStore

    return TenantStore(make_engine(Settings().ledger_url))


@app.command("create")
def create(
    tenant_id: str = typer.Argument(..., help="1-64 of a-z 0-9 _ -"),
    name: str | None = typer.Option(None, help="A display name."),
    allow: list[str] | None = typer.Option(None, "--allow", help="An S3 source the tenant may "
                                           "submit, bucket/prefix (repeatable). None: any."),
) -> None:
    """Create a tenant, or update its name and allowlist."""
    fields.TENANT.check(tenant_id)
    if name is not None:
        fields.NAME.check(name)
    try:
        found = _store().save(tenant_id, name, allow or None)
    except InvalidField:
        raise  # already a usage error, with its field and code
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    rules = "any source" if found.allowed_sources is None else ", ".join(found.allowed_sources)
    typer.echo(f"tenant {found.id} ({found.name}): {rules}")


@app.command("key")
def key(
    tenant_id: str = typer.Argument(...),
    label: str | None = typer.Option(None, help="What the key is for."),
) -> None:
    """Issue an API key for the tenant. It is printed once; only its hash is kept."""
    fields.TENANT.check(tenant_id)
    if label is not None:
        fields.LABEL.check(label)
    store = _store()
    if store.get(tenant_id) is None:
        raise UsageError(f"no tenant {tenant_id!r}: create it first with `clipline tenants "
                         "create`")
    key_id, secret = store.create_key(tenant_id, label)
    typer.echo(f"key id {key_id}\n{secret}")


@app.command("revoke")
def revoke(key_id: uuid.UUID = typer.Argument(...)) -> None:
    """Revoke an API key; requests with it get 401 from then on."""
    if not _store().revoke_key(key_id):
        raise UsageError(f"no live key {key_id}")
    typer.echo(f"revoked {key_id}")


@app.command("show")
def show(tenant_id: str = typer.Argument(...)) -> None:
    """A tenant's allowlist and keys (ids and labels, never the keys)."""
    fields.TENANT.check(tenant_id)
    store = _store()
    found = store.get(tenant_id)
    if found is None:
        raise UsageError(f"no tenant {tenant_id!r}")
    typer.echo(json.dumps({"id": found.id, "name": found.name,
                           "allowed_sources": found.allowed_sources,
                           "keys": store.keys(tenant_id)}, indent=2, default=str))


@app.command("secret")
def secret(tenant_id: str = typer.Argument(...)) -> None:
    """Print the key that signs the tenant's completion callbacks (give it to the receiver)."""
    fields.TENANT.check(tenant_id)
    found = _store().callback_secret(tenant_id)
    if found is None:
        raise UsageError(f"no tenant {tenant_id!r}")
    typer.echo(found)
