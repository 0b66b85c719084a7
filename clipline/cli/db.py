"""``clipline db``: create, upgrade and inspect the job ledger's schema."""

from __future__ import annotations

import typer

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
def upgrade(url: str | None = URL, revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION (default: the newest). Safe to run again."""
    from pipeline.adapters.ledger.database import redact_url
    from pipeline.adapters.ledger.database import upgrade as run_upgrade

    target = _url(url)
    run_upgrade(target, revision)
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
