"""The migrations build exactly the schema the code declares, and come down cleanly."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from pipeline.adapters.ledger.database import (
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    upgrade,
)
from pipeline.adapters.ledger.schema import metadata
from tests.conftest import _admin_engine


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.sqlite3'}"
    base: str = request.getfixturevalue("pg_database")
    name = base.rsplit("/", 1)[1] + "_mig"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    request.addfinalizer(lambda: _drop(name))
    return base.rsplit("/", 1)[0] + "/" + name


def _drop(name: str) -> None:
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_head_matches_the_declared_schema(empty_url: str) -> None:
    upgrade(empty_url)
    engine = create_engine(empty_url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    claim_index = {i["name"]: i for i in inspect(engine).get_indexes("jobs")}["ix_jobs_claim"]
    engine.dispose()
    # Alembic cannot compare expression indexes (priority DESC); that one is checked by hand.
    assert [d for d in diff if not _is_claim_index(d)] == []
    assert "priority" in str(claim_index.get("expressions") or claim_index["column_names"])
    assert claim_index["column_names"][1:] == ["not_before", "id"]


def _is_claim_index(entry: object) -> bool:
    return isinstance(entry, tuple) and getattr(entry[1], "name", None) == "ix_jobs_claim"


def test_upgrade_creates_the_default_tenant_and_is_repeatable(empty_url: str) -> None:
    upgrade(empty_url)
    upgrade(empty_url)  # a second run is a no-op
    engine = make_engine(empty_url)
    assert current_revision(engine) == head_revision() == "0008"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM tenants")).scalars().all() == ["default"]
    engine.dispose()


def test_downgrade_to_base_removes_everything_and_upgrade_again_works(empty_url: str) -> None:
    upgrade(empty_url)
    downgrade(empty_url, "base")
    engine = create_engine(empty_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()
    upgrade(empty_url)
    engine = create_engine(empty_url)
    assert {"tenants", "batches", "jobs", "job_events"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_downgrade_one_step_keeps_the_jobs_and_upgrade_brings_the_column_back(
    empty_url: str,
) -> None:
    upgrade(empty_url)
    downgrade(empty_url, "0001")
    engine = create_engine(empty_url)
    assert "published_at" not in {c["name"] for c in inspect(engine).get_columns("jobs")}
    engine.dispose()
    upgrade(empty_url)
    engine = create_engine(empty_url)
    columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
    indexes = {i["name"] for i in inspect(engine).get_indexes("jobs")}
    engine.dispose()
    assert "published_at" in columns
    assert "ix_jobs_unpublished" in indexes


def test_jobs_from_before_0005_keep_their_order_and_come_before_new_ones(
    empty_url: str,
) -> None:
    """Upgrading a ledger that holds jobs: they all get one txid, so they list in their old
    order (by id), ahead of jobs submitted afterwards; a downgrade keeps them."""
    from pipeline.adapters.ledger.sql import SqlLedger
    from pipeline.jobs import JobSpec

    upgrade(empty_url, "0004")
    engine = make_engine(empty_url)
    old = [uuid.UUID(f"0190{i:04x}-0000-7000-8000-000000000000") for i in (2, 1, 3)]
    with engine.begin() as conn:
        for n, job_id in enumerate(old):
            conn.execute(text(
                "INSERT INTO jobs (id, tenant_id, source_bucket, source_key, options, model,"
                " idempotency_key, priority, status, attempts, max_attempts, not_before,"
                " created_at, updated_at) VALUES (:id, 'default', 'b', :key, '{}', 'u2netp',"
                " :ikey, 0, 'queued', 0, 3, :t, :t, :t)"),
                {"id": job_id.hex if "sqlite" in empty_url else job_id, "key": f"{n}.jpg",
                 "ikey": f"k{n}", "t": "2026-01-01 00:00:00"})
    engine.dispose()
    upgrade(empty_url)
    ledger = SqlLedger(make_engine(empty_url))
    new = ledger.submit(JobSpec("b", "new.jpg")).job
    assert [j.id for j in ledger.list_jobs()] == [*sorted(old), new.id]
    assert ledger.get(old[0]).request is None
    ledger.close()
    downgrade(empty_url, "0004")
    engine = create_engine(empty_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 4
    columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
    indexes = {i["name"] for i in inspect(engine).get_indexes("jobs")}
    engine.dispose()
    assert not {"txid", "request"} & columns
    assert {"ix_jobs_batch_id_status", "ix_jobs_tenant_id_status_id"} <= indexes


def _open_tenants_at_0006(url: str) -> None:
    """A 0006 ledger as the old code left it: tenants without rules (SQL NULL, JSON null),
    one with a key, one with rules."""
    from datetime import UTC, datetime

    from pipeline.adapters.ledger.schema import api_keys, tenants

    upgrade(url, "0006")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(tenants.insert(), [
            {"id": "acme", "name": "acme", "allowed_sources": None},  # JSON null, has a key
            {"id": "events-only", "name": "e", "allowed_sources": None},
            {"id": "shoes", "name": "s", "allowed_sources": ["photos/shoes/"]}])
        conn.execute(api_keys.insert().values(id=uuid.uuid4(), tenant_id="acme", key_hash="h" * 64,
                                              created_at=datetime.now(UTC)))
    engine.dispose()


def _sources(url: str) -> dict[str, tuple[object, object]]:
    from pipeline.adapters.ledger.tenants import TenantStore

    engine = make_engine(url)
    store = TenantStore(engine)
    found = {}
    for tenant_id in ("default", "acme", "events-only", "shoes"):
        tenant = store.get(tenant_id)
        assert tenant is not None
        found[tenant_id] = (list(tenant.allowed_sources), tenant.allow_any)
    engine.dispose()
    return found


def test_0007_changes_no_open_tenant_without_the_operators_answer(empty_url: str) -> None:
    from pipeline.errors import OpenTenantsUndecided

    _open_tenants_at_0006(empty_url)
    with pytest.raises(OpenTenantsUndecided, match="acme, events-only"):
        upgrade(empty_url)
    engine = make_engine(empty_url)
    assert current_revision(engine) == "0006"
    assert "allow_any" not in {c["name"] for c in inspect(engine).get_columns("tenants")}
    engine.dispose()


def test_0007_allow_any_keeps_open_tenants_open_visibly_and_downgrades_back(
        empty_url: str) -> None:
    _open_tenants_at_0006(empty_url)
    upgrade(empty_url, open_tenants="allow-any")
    assert _sources(empty_url) == {
        "default": ([], False),  # no key: the operator's own tenant is closed without asking
        "acme": ([], True), "events-only": ([], True), "shoes": (["photos/shoes/"], False)}
    downgrade(empty_url, "0006")
    engine = create_engine(empty_url)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT id, allowed_sources FROM tenants")).all())
    engine.dispose()
    assert rows["acme"] is None and rows["events-only"] is None  # "any" under 0006


def test_0007_deny_closes_open_tenants(empty_url: str) -> None:
    _open_tenants_at_0006(empty_url)
    upgrade(empty_url, open_tenants="deny")
    assert _sources(empty_url) == {
        "default": ([], False), "acme": ([], False), "events-only": ([], False),
        "shoes": (["photos/shoes/"], False)}


def test_0008_adds_the_destination_columns_and_a_downgrade_keeps_the_jobs(
        empty_url: str) -> None:
    from pipeline.adapters.ledger.sql import SqlLedger
    from pipeline.jobs import JobSpec

    upgrade(empty_url, "0007")
    engine = make_engine(empty_url)
    with engine.begin() as conn:  # a job as 0007 stored it: no destination columns
        conn.execute(text(
            "INSERT INTO jobs (id, tenant_id, source_bucket, source_key, options, model,"
            " idempotency_key, status, max_attempts, not_before, created_at, updated_at"
            + (", txid" if empty_url.startswith("sqlite") else "") + ") VALUES"
            " (:id, 'default', 'photos', 'old.jpg', '{}', 'u2netp', 'k-old', 'queued', 3,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP"
            + (", 1" if empty_url.startswith("sqlite") else "") + ")"),
            {"id": uuid.uuid4().hex if empty_url.startswith("sqlite") else str(uuid.uuid4())})
    engine.dispose()
    upgrade(empty_url)
    engine = make_engine(empty_url)
    ledger = SqlLedger(engine)
    old = ledger.list_jobs()[0]
    assert (old.key, old.output_bucket, old.output_key) == ("old.jpg", None, None)
    ledger.submit(JobSpec(bucket="photos", key="new.jpg", output_key="cutouts/default/new.png"))
    assert {c["name"] for c in inspect(engine).get_columns("tenants")} >= {"allowed_outputs"}
    engine.dispose()
    downgrade(empty_url, "0007")
    engine = create_engine(empty_url)
    columns = {c["name"] for c in inspect(engine).get_columns("jobs")}
    with engine.connect() as conn:
        keys = sorted(conn.execute(text("SELECT source_key FROM jobs")).scalars())
    engine.dispose()
    assert "output_key" not in columns and "output_bucket" not in columns
    assert keys == ["new.jpg", "old.jpg"]
