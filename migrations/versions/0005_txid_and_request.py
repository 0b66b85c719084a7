"""jobs.txid: listings in commit-safe order; jobs.request: what an explicit idempotency key
stands for.

Existing rows all get one txid (PostgreSQL: this migration's transaction; SQLite: 1), so they
keep their old order (by id) among themselves, ahead of every job inserted afterwards. Their
``request`` stays NULL: a key reused against one of them compares what the row holds (source,
options, model, callback URL), not the priority or deadline it was sent with.

On PostgreSQL ``pg_current_xact_id()`` is stable, so adding the column is a catalogue change
(no table rewrite); the listing indexes are built in the migration's transaction.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.adapters.ledger.schema import PG_TXID, NullableJSONDoc

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OLD_INDEXES = {"ix_jobs_batch_id_status": ["batch_id", "status"],
               "ix_jobs_tenant_id_status_id": ["tenant_id", "status", "id"]}
NEW_INDEXES = {"ix_jobs_txid_id": ["txid", "id"],
               "ix_jobs_tenant_id_txid_id": ["tenant_id", "txid", "id"],
               "ix_jobs_tenant_id_status_txid_id": ["tenant_id", "status", "txid", "id"],
               "ix_jobs_batch_id_txid_id_status": ["batch_id", "txid", "id", "status"]}


DEAD = sa.text("status = 'dead'")


def _dead_reason(*columns: str) -> None:
    op.drop_index("ix_jobs_dead_reason", table_name="jobs")
    op.create_index("ix_jobs_dead_reason", "jobs", ["tenant_id", "last_error_code", *columns],
                    postgresql_where=DEAD, sqlite_where=DEAD)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("jobs", sa.Column("txid", sa.BigInteger(), nullable=False,
                                        server_default=PG_TXID))
    else:  # no default on SQLite: the ledger numbers each write transaction itself
        op.add_column("jobs", sa.Column("txid", sa.BigInteger(), nullable=True))
        op.execute("UPDATE jobs SET txid = 1")
        with op.batch_alter_table("jobs") as batch:
            batch.alter_column("txid", existing_type=sa.BigInteger(), nullable=False)
    op.add_column("jobs", sa.Column("request", NullableJSONDoc, nullable=True))
    for name in OLD_INDEXES:
        op.drop_index(name, table_name="jobs")
    for name, columns in NEW_INDEXES.items():
        op.create_index(name, "jobs", columns)
    _dead_reason("txid", "id")


def downgrade() -> None:
    _dead_reason()
    for name in NEW_INDEXES:
        op.drop_index(name, table_name="jobs")
    for name, columns in OLD_INDEXES.items():
        op.create_index(name, "jobs", columns)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("request")
        batch.drop_column("txid")
