"""``clipline db``: create, upgrade and inspect the job ledger's schema."""

from __future__ import annotations

import typer

from pipeline.errors import UsageError
from pipeline.settings import Settings

app = typer.Typer(
    help="Manage the job ledger's database schema (Alembic migrations). The database is "
    "CLIPLINE_DATABASE_URL, or the embedded SQLite file under CLIPLINE_DATA_DIR.",
    no_args_is_help=True,
)

URL = typer.Option(
    None, "--url", help="SQLAlchemy URL of the ledger (default: from the settings)."
)


def _url(url: str | None) -> str:
    return url or Settings().ledger_url


@app.command()
def upgrade(
    url: str | None = URL,
    revision: str = typer.Argument("head"),
    open_tenants: str | None = typer.Option(
        None, "--open-tenants", help="Migration 0007: what tenants without an allowlist (which "
        "could read every source) become: allow-any (they keep every source, now shown as "
        "allow_any) or deny (no source until --allow). Asked only when such a tenant exists."),
) -> None:
    """Apply migrations up to REVISION (default: the newest). Safe to run again."""
    from pipeline.adapters.ledger.database import redact_url
    from pipeline.adapters.ledger.database import upgrade as run_upgrade

    if open_tenants not in (None, "allow-any", "deny"):
        raise UsageError(f"--open-tenants is allow-any or deny (got {open_tenants!r})")
    target = _url(url)
    run_upgrade(target, revision, open_tenants=open_tenants)
    typer.echo(f"ledger at {revision}: {redact_url(target)}")


@app.command()
def downgrade(
    revision: str = typer.Argument(..., help="Target revision, e.g. 'base' to drop everything."),
    url: str | None = URL,
    yes: bool = typer.Option(False, "--yes", help="Do not ask; needed without a terminal."),
) -> None:
    """Undo migrations down to REVISION. Downgrading to 'base' deletes every job."""
    from pipeline.adapters.ledger.database import downgrade as run_downgrade
    from pipeline.adapters.ledger.database import redact_url

    target = _url(url)
    if not yes and not typer.confirm(f"Downgrade {redact_url(target)} to {revision}?"):
        raise typer.Exit(1)
    run_downgrade(target, revision)
    typer.echo(f"ledger at {revision}: {redact_url(target)}")


@app.command()
def current(url: str | None = URL) -> None:
    """Print the schema revision the ledger is at ('none' before the first upgrade)."""
    from pipeline.adapters.ledger.database import current_revision, make_engine

    engine = make_engine(_url(url))
    try:
        typer.echo(current_revision(engine) or "none")
    finally:
        engine.dispose()
