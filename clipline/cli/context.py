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
    from pipeline.adapters.ledger.sql import SqlLedger

    ledger = SqlLedger.from_settings(settings)
    try:
        require_newest_schema(ledger.engine, settings.ledger_url)
    except InvalidSettings:
        ledger.close()
        raise
    return ledger


def require_newest_schema(engine: Any, url: str) -> None:
    """Raise InvalidSettings (one line, naming the fix) unless the database behind ``engine``
    is at the newest migration this code ships."""
    from pipeline.adapters.ledger.database import current_revision, head_revision, redact_url

    found, wanted = current_revision(engine), head_revision()
    if found != wanted:
        raise InvalidSettings(
            f"the ledger at {redact_url(url)} is at schema {found or 'none'}, "
            f"this code needs {wanted}: run `clipline db upgrade`"
        )


def celery_queue(settings: Settings | None = None) -> Any:
    """The Celery queue: the process's own app, or one built from ``settings``."""
    from workers.app import app as celery_app
    from workers.app import create_app
    from workers.queue import CeleryQueue

    return CeleryQueue(celery_app if settings is None else create_app(settings))
