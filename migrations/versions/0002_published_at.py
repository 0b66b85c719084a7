"""jobs.published_at: when a wake-up message was last sent, for the reconciler.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.adapters.ledger.schema import UNPUBLISHED, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("published_at", UTCDateTime(), nullable=True))
    op.create_index(
        "ix_jobs_unpublished",
        "jobs",
        ["not_before"],
        postgresql_where=sa.text(UNPUBLISHED),
        sqlite_where=sa.text(UNPUBLISHED),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_unpublished", table_name="jobs")
    # SQLite cannot drop a column that an index once named without a table copy: batch mode.
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("published_at")
