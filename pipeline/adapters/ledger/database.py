"""Engines for the ledger: PostgreSQL in production, SQLite embedded; migrations with Alembic.

SQLite is made safe for several threads and processes: WAL journal, a busy timeout, and every
transaction opened with ``BEGIN IMMEDIATE`` so two writers queue instead of failing halfway.
"""

from __future__ import annotations

import importlib.resources
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    InterfaceError,
    OperationalError,
)

from pipeline.errors import InvalidSettings, LedgerDamaged, LedgerUnavailable, UnstorableValue

# The Alembic scripts: the top-level migrations/ of the source tree, installed as this package
# (pyproject.toml maps the one onto the other), in an editable install as in a wheel.
MIGRATIONS = "pipeline.migrations"


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    pool_timeout: float = 10.0,
    statement_timeout: float = 30.0,
    connect_timeout: float = 10.0,
) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:  # the URL itself is never echoed: it may hold a password
        raise InvalidSettings("the ledger URL (CLIPLINE_DATABASE_URL or --url) is not a "
                              "database URL, e.g. postgresql+psycopg://user@host/db") from exc
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, busy_timeout=statement_timeout)
    connect_args: dict[str, Any] = {
        "connect_timeout": max(1, int(connect_timeout)),
        "options": f"-c statement_timeout={int(statement_timeout * 1000)}",
        "application_name": "clipline",
    }
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout,
        # No pre-ping: it costs a round trip per checkout. A connection that died in the pool
        # fails its first statement, which surfaces as the transient LedgerUnavailable and
        # invalidates the pool, so the retry gets a fresh connection.
        pool_recycle=1800,
        connect_args=connect_args,
    )


def _sqlite_engine(url: str, *, busy_timeout: float) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": busy_timeout}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself instead of pysqlite's lazy BEGIN.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


@contextmanager
def translated() -> Iterator[None]:
    """Turn a lost or refused database connection into the transient ``LedgerUnavailable``.

    A value the database cannot hold (NUL in text, an unpaired surrogate, a number out of its
    column's range, text over its length) is the caller's data, not weather: ``UnstorableValue``.
    Every door checks its fields first (``pipeline.fields``), so this is the last line, there so
    that a check forgotten somewhere answers as a refusal and never as a crash.
    Constraint violations and programming errors are bugs, not weather: they propagate as they are.
    """
    try:
        yield
    except psycopg.DataError as exc:  # raised raw by the COPY of bulk inserts
        raise UnstorableValue(f"the ledger cannot store a value: {exc}") from exc
    except psycopg.OperationalError as exc:
        raise LedgerUnavailable(f"ledger database error: {exc}") from exc
    except DataError as exc:
        raise UnstorableValue(f"the ledger cannot store a value: {exc.orig or exc}") from exc
    except UnicodeEncodeError as exc:  # psycopg encodes text as UTF-8 before sending it
        raise UnstorableValue(f"the ledger cannot store text that is not valid Unicode: "
                              f"{exc.reason} at character {exc.start}") from exc
    except (OperationalError, InterfaceError) as exc:
        raise LedgerUnavailable(f"ledger database error: {exc.orig or exc}") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise LedgerUnavailable(f"ledger connection lost: {exc.orig or exc}") from exc
        if type(exc.orig) is sqlite3.DatabaseError:  # not one of its subclasses: a bad file
            # "file is not a database", "database disk image is malformed"
            raise LedgerDamaged(f"the ledger's SQLite file is damaged ({exc.orig}): move it "
                                "aside to start a new one") from exc
        raise


def migrations_folder() -> Path:
    """The folder of the Alembic scripts (env.py, versions/), wherever Clipline is installed."""
    return Path(str(importlib.resources.files(MIGRATIONS)))


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_folder()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _migrate(url: str, action: str, revision: str, **answers: str | None) -> None:
    """Run an Alembic command; an unknown revision is ``InvalidSettings`` (a caller's typo)."""
    from alembic import command
    from alembic.util.exc import CommandError

    cfg = alembic_config(url)
    engine = make_engine(url)
    try:
        with translated(), engine.begin() as conn:
            cfg.attributes["connection"] = conn
            cfg.attributes.update(answers)
            getattr(command, action)(cfg, revision)
    except CommandError as exc:
        raise InvalidSettings(f"{action} to {revision!r}: {exc}") from exc
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head", *, open_tenants: str | None = None) -> None:
    """Migrate the ledger up to ``revision``, in one transaction.

    ``open_tenants`` answers migration 0007 for tenants that had no allowlist (so every
    source): ``allow-any`` keeps every source for them, as a visible choice; ``deny`` closes
    them. Raises ``OpenTenantsUndecided`` (nothing changed) when such a tenant may be in use
    and no answer was given, ``LedgerUnavailable`` when the database is down."""
    _migrate(url, "upgrade", revision, open_tenants=open_tenants)


def downgrade(url: str, revision: str) -> None:
    _migrate(url, "downgrade", revision)


def head_revision() -> str | None:
    """The newest migration this code ships."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with translated(), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def redact_url(url: str) -> str:
    """The URL with any password masked, fit for logs and terminals."""
    return make_url(url).render_as_string(hide_password=True)
