"""Shared fixtures: a fresh PostgreSQL database per test session, SQLite files per test.

The services are real: PostgreSQL on 127.0.0.1:5432 (``.ci/run`` starts it when it is down).
Set CLIPLINE_TEST_PG to point elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text

from pipeline.adapters.ledger.database import make_engine, upgrade
from pipeline.adapters.ledger.sql import SqlLedger
from pipeline.clock import ManualClock
from pipeline.retry import Backoff
from tests.modelkit import TEST_MODEL

# The default model (u2net) is 176 MB: the suite runs u2netp, in this process and in every
# `clipline` it starts with this environment. A test about the default unsets it.
os.environ["CLIPLINE_MODEL"] = TEST_MODEL

pytest_plugins = ["tests.tritonkit"]

# Every property test draws the same examples on every run (CI must be deterministic); a
# deeper, randomized run is `HYPOTHESIS_PROFILE=fuzz` (what `make fuzz-api` sets).
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("fuzz", derandomize=False, database=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

PG_SERVER = os.environ.get("CLIPLINE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
LEDGER_TABLES = "job_events, jobs, batches, tenants"


def _admin_engine():  # type: ignore[no-untyped-def]
    return create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A PostgreSQL database of its own for this test session, dropped at the end."""
    name = f"clipline_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_ledger_url(pg_database: str) -> str:
    upgrade(pg_database)
    return pg_database


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "ledger.sqlite3"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty ledger database: a fresh SQLite file, or the session's PostgreSQL
    database emptied (only the default tenant left)."""
    return _ledger_url(request, request.param, tmp_path)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sql_ledger(ledger_url: str, clock: ManualClock) -> Iterator[SqlLedger]:
    ledger = SqlLedger(
        make_engine(ledger_url),
        clock=clock,
        lease_seconds=60,
        max_attempts=3,
        backoff=Backoff(base=2.0, cap=60.0),
    )
    yield ledger
    ledger.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path) -> Iterator[object]:
    """Every ledger implementation, held to one contract."""
    from pipeline.adapters.ledger.memory import MemoryLedger

    settings = {"clock": clock, "lease_seconds": 60, "max_attempts": 3,
                "backoff": Backoff(base=2.0, cap=60.0)}
    if request.param == "memory":
        yield MemoryLedger(**settings)  # type: ignore[arg-type]
        return
    url = _ledger_url(request, request.param, tmp_path)
    sql = SqlLedger(make_engine(url), **settings)  # type: ignore[arg-type]
    yield sql
    sql.close()


def _ledger_url(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("pg_ledger_url")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {LEDGER_TABLES} CASCADE"))
        conn.execute(text("INSERT INTO tenants (id, name) VALUES ('default', 'default')"))
    engine.dispose()
    return url


MODEL_CACHE = Path(
    os.environ.get(
        "CLIPLINE_TEST_MODELS_DIR", Path(__file__).resolve().parents[1] / ".cache" / "models"
    )
)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """A models folder holding the real, verified u2netp (downloaded once, then cached)."""
    from pipeline.model_fetch import pull
    from pipeline.models import U2NETP

    pull(U2NETP, MODEL_CACHE)
    return MODEL_CACHE


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 (and SQS) server: a real HTTP endpoint on 127.0.0.1, for the whole session."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
