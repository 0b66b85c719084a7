"""The docs match the code: every setting, every command and every package is in the README."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_readme_lists_every_setting() -> None:
    missing = [n for n in Settings.model_fields if f"`CLIPLINE_{n.upper()}`" not in README]
    assert missing == []


def test_readme_gives_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README


def _command_rows() -> dict[str, str]:
    """The README's table of commands: command name → its first cell."""
    rows: dict[str, str] = {}
    for line in README.splitlines():
        found = re.match(r"\| `clipline ([a-z0-9-]+)", line)
        if found:
            assert found.group(1) not in rows, f"`clipline {found.group(1)}` is described twice"
            rows[found.group(1)] = line.split("|")[1]
    return rows


def test_readme_describes_every_command_once() -> None:
    from clipline.cli import app

    command = typer.main.get_command(app)
    commands: dict[str, Any] = command.commands  # type: ignore[attr-defined]  (a click Group)
    rows = _command_rows()
    assert set(rows) == set(commands)
    for name, sub in commands.items():
        for leaf in getattr(sub, "commands", {}):
            assert f"`{leaf}`" in rows[name] or f"{name} {leaf}`" in rows[name], (name, leaf)


def test_readme_layout_maps_the_packages_and_states_the_layering_rule() -> None:
    layout = README[README.index("## Layout"):README.index("## Status")]
    for path in ("clipline/cli/", "pipeline/", "pipeline/adapters/", "workers/", "migrations/"):
        assert f"| `{path}`" in layout, path
    for port in sorted(p.parent.name for p in (ROOT / "pipeline" / "adapters").glob("*/*.py")):
        assert f"`pipeline/adapters/{port}/`" in layout or f"`{port}/`" in layout, port
    assert "`pipeline` imports neither Celery, `workers` nor `clipline`" in layout
    assert "`workers` imports `pipeline`, never `clipline`" in layout
