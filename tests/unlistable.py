"""A folder that cannot be listed, for tests that may run as root (who lists every folder)."""

from __future__ import annotations

import os

import pytest


def refuse_listing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """``os.scandir`` of any folder named ``name`` raises EACCES, as for an unreadable folder."""
    real = os.scandir

    def scandir(path: str) -> object:
        if os.fspath(path).endswith(name):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
