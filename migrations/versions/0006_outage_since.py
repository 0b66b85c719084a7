"""jobs.outage_since: when a shared dependency began failing the job, for the outage budget.

A failure that says Triton, object storage, the database or the broker is down gives the job's
attempt back; the job waits out the outage until it is older than the budget (pipeline/retry.py).
Adding a nullable column without a default is a catalogue change on PostgreSQL (no rewrite).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from pipeline.adapters.ledger.schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("outage_since", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("outage_since")
