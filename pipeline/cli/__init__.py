"""The ``clipline`` command. Each group of sub-commands lives in its own module here."""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from pipeline.cli import db, demo, jobs, models, tenants, triton
from pipeline.cli import run as run_command
from pipeline.errors import ClipError, LedgerRefusal, UsageError

app = typer.Typer(
    name="clipline",
    help="Clipline: cut product images out of their backgrounds, one image or millions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: click rewraps docstring paragraphs to the terminal's width.
    rich_markup_mode=None,
)
app.add_typer(db.app, name="db")
app.add_typer(models.app, name="models")
app.add_typer(triton.app, name="triton")
app.add_typer(tenants.app, name="tenants")
app.command("run")(run_command.run)
app.command("demo")(demo.demo)
app.command("status")(jobs.status)
app.command("redrive")(jobs.redrive)


def main() -> None:
    """Entry point: a known failure is one clear line on stderr and exit status 2."""
    try:
        app()
    except ValidationError as exc:
        problems = "; ".join(
            (f"CLIPLINE_{'_'.join(map(str, e['loc'])).upper()}: " if e["loc"] else "")
            + e["msg"]
            for e in exc.errors()
        )
        _fail(f"invalid setting: {problems}")
    except (ClipError, LedgerRefusal, UsageError) as exc:
        _fail(f"{exc.reason}: {exc}")


def _fail(message: str) -> None:
    print(f"clipline: {message}", file=sys.stderr)
    sys.exit(2)
