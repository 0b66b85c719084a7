"""The docs match the code: every setting is in the README's table."""

from __future__ import annotations

from pathlib import Path

from pipeline.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_lists_every_setting() -> None:
    missing = [n for n in Settings.model_fields if f"`CLIPLINE_{n.upper()}`" not in README]
    assert missing == []


def test_readme_gives_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README
