"""Completion callbacks: per-job delivery state, and a signing secret per tenant.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.adapters.ledger.schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PENDING = "callback_state = 'pending'"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("callback_url", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("callback_state", sa.String(16), nullable=True))
    op.add_column("jobs", sa.Column("callback_attempts", sa.Integer(), nullable=False,
                                    server_default="0"))
    op.add_column("jobs", sa.Column("callback_next_at", UTCDateTime(), nullable=True))
    op.add_column("jobs", sa.Column("callback_error", sa.Text(), nullable=True))
    op.create_index("ix_jobs_callbacks_due", "jobs", ["callback_next_at"],
                    postgresql_where=sa.text(PENDING), sqlite_where=sa.text(PENDING))
    op.add_column("tenants", sa.Column("callback_secret", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_index("ix_jobs_callbacks_due", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in ("callback_error", "callback_next_at", "callback_attempts",
                       "callback_state", "callback_url"):
            batch.drop_column(column)
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("callback_secret")
