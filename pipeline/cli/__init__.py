"""The ``clipline`` command. Each group of sub-commands lives in its own module here."""

from __future__ import annotations

import typer

from pipeline.cli import db

app = typer.Typer(
    name="clipline",
    help="Clipline: cut product images out of their backgrounds, one image or millions.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(db.app, name="db")
