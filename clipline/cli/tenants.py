"""``clipline tenants``: create tenants, set their S3 allowlist, issue and revoke API keys.

Each command changes only what it names: ``create`` on an existing tenant keeps its allowlist,
its ``allow_any``, its keys and its callback secret unless an option says otherwise."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import typer

from clipline.cli.context import require_newest_schema
from pipeline import fields
from pipeline.errors import InvalidField, InvalidSettings, UsageError
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.adapters.ledger.tenants import TenantStore

app = typer.Typer(help="Tenants and their API keys (for `clipline api`).", no_args_is_help=True)


def _store() -> TenantStore:
    """The tenants table; refused with one line unless the ledger's schema is the newest (an
    older one lacks columns the store reads, e.g. ``allow_any`` before 0007)."""
    from pipeline.adapters.ledger.database import make_engine
    from pipeline.adapters.ledger.tenants import TenantStore

    url = Settings().ledger_url
    engine = make_engine(url)
    try:
        require_newest_schema(engine, url)
    except InvalidSettings:
        engine.dispose()
        raise
    return TenantStore(engine)


@app.command("create")
def create(
    tenant_id: str = typer.Argument(..., help="1-64 of a-z 0-9 _ -"),
    name: str | None = typer.Option(None, help="A display name (default: kept, or the id)."),
    allow: list[str] | None = typer.Option(
        None, "--allow", help="An S3 source the tenant may submit, bucket/prefix (repeatable). "
        "Replaces the tenant's allowlist, and ends --allow-any."),
    clear_allow: bool = typer.Option(
        False, "--clear-allow", help="Empty the allowlist (and end --allow-any): the tenant "
        "may submit no source."),
    allow_any: bool | None = typer.Option(
        None, "--allow-any/--no-allow-any", help="Let the tenant submit every source Clipline's "
        "own credentials can read (a deliberate choice, logged when used), or stop that."),
    allow_output: list[str] | None = typer.Option(
        None, "--allow-output", help="Where else than its own area of the output bucket the "
        "tenant may have cut-outs written, bucket/prefix (repeatable). Replaces the tenant's "
        "output rules; --allow-any does not extend to outputs."),
    clear_allow_output: bool = typer.Option(
        False, "--clear-allow-output", help="Empty the output rules: cut-outs go only to the "
        "tenant's own area of the output bucket."),
) -> None:
    """Create a tenant, or change what the options name (nothing else: a rename keeps the
    allowlist, keys and callback secret). A new tenant may submit no source until --allow."""
    fields.TENANT.check(tenant_id)
    if name is not None:
        fields.NAME.check(name)
    if allow and clear_allow:
        raise UsageError("give --allow or --clear-allow, not both")
    if allow_any and (allow or clear_allow):
        raise UsageError("--allow-any allows every source: give it without --allow or "
                         "--clear-allow")
    if allow_output and clear_allow_output:
        raise UsageError("give --allow-output or --clear-allow-output, not both")
    rules = [] if clear_allow else (allow or None)
    outputs = [] if clear_allow_output else (allow_output or None)
    try:
        found = _store().save(tenant_id, name, rules, allow_any=allow_any,
                              allowed_outputs=outputs)
    except InvalidField:
        raise  # already a usage error, with its field and code
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    typer.echo(f"tenant {found.id} ({found.name}): {found.describe_sources()}; outputs: "
               f"{found.describe_outputs()}")
    if found.allow_any:
        typer.echo(f"warning: {found.id}'s keys can have Clipline read every bucket its "
                   "credentials reach; prefer --allow bucket/prefix", err=True)


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
    """A tenant's allowlist, whether it may read every source, and its keys (ids and labels,
    never the keys)."""
    fields.TENANT.check(tenant_id)
    store = _store()
    found = store.get(tenant_id)
    if found is None:
        raise UsageError(f"no tenant {tenant_id!r}")
    typer.echo(json.dumps({"id": found.id, "name": found.name,
                           "allowed_sources": list(found.allowed_sources),
                           "allow_any": found.allow_any,
                           "sources": found.describe_sources(),
                           "allowed_outputs": list(found.allowed_outputs),
                           "keys": store.keys(tenant_id)}, indent=2, default=str))


@app.command("secret")
def secret(tenant_id: str = typer.Argument(...)) -> None:
    """Print the key that signs the tenant's completion callbacks (give it to the receiver)."""
    fields.TENANT.check(tenant_id)
    found = _store().callback_secret(tenant_id)
    if found is None:
        raise UsageError(f"no tenant {tenant_id!r}")
    typer.echo(found)
