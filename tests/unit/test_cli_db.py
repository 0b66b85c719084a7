"""`clipline db` refuses a revision that does not exist and a URL that is not one with one line
and exit status 2, never a traceback (found by a newcomer's try on 2026-12-01)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_models import clipline


@pytest.mark.parametrize("args", [
    ("db", "upgrade", "9999"),
    ("db", "downgrade", "9999", "--yes"),
])
def test_an_unknown_revision_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                         args: tuple[str, ...]) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    code, _, err = clipline(monkeypatch, capsys, *args, "--url", url)
    assert code == 2
    assert err.startswith("clipline: invalid_settings: ") and "'9999'" in err
    assert len(err.strip().splitlines()) == 1


def test_a_url_that_is_not_one_is_one_line_without_echoing_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = clipline(monkeypatch, capsys, "db", "upgrade", "--url", "not:a-url-secret")
    assert code == 2
    assert "is not a database URL" in err and "secret" not in err
    assert len(err.strip().splitlines()) == 1


def test_tenants_against_an_older_schema_say_to_upgrade(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    # A ledger at 0006 has no tenants.allow_any: the tenants commands used to fail with the
    # database's "no such column"; now they name the fix, as every other command does.
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    code, _, err = clipline(monkeypatch, capsys, "db", "upgrade", "0006", "--url", url)
    assert code == 0, err
    monkeypatch.setenv("CLIPLINE_DATABASE_URL", url)
    code, _, err = clipline(monkeypatch, capsys, "tenants", "show", "acme")
    assert code == 2
    assert err.startswith("clipline: invalid_settings: ") and "run `clipline db upgrade`" in err
    assert len(err.strip().splitlines()) == 1
