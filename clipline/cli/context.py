"""What the service commands build before they work: the settings (with logging configured), the
ledger (refused unless its schema is this code's), and the Celery queue.

``worker``, ``reconcile``, ``api``, ``submit`` and ``events`` share these; each command module
imports them from here, never from a sibling command, so no two command modules import each other.
"""

from __future__ import annotations

from typing import Any

from pipeline import logs
from pipeline.errors import InvalidSettings
from pipeline.settings import Settings


def load_settings() -> Settings:
    """The settings from the environment, with logging configured from them."""
    found = Settings()
    logs.configure(found.log_format, found.log_level)
    return found


def checked_ledger(settings: Settings) -> Any:
    """The SQL ledger of ``settings``; refused (InvalidSettings) unless its schema is at the
    newest migration this code ships."""
    from pipeline.adapters.ledger.database import current_revision, head_revision, redact_url
    from pipeline.adapters.ledger.sql import SqlLedger

    ledger = SqlLedger.from_settings(settings)
    found, wanted = current_revision(ledger.engine), head_revision()
    if found != wanted:
        ledger.close()
        raise InvalidSettings(
            f"the ledger at {redact_url(settings.ledger_url)} is at schema {found or 'none'}, "
            f"this code needs {wanted}: run `clipline db upgrade`"
        )
    return ledger


def celery_queue(settings: Settings | None = None) -> Any:
    """The Celery queue: the process's own app, or one built from ``settings``."""
    from workers.app import app as celery_app
    from workers.app import create_app
    from workers.queue import CeleryQueue

    return CeleryQueue(celery_app if settings is None else create_app(settings))
