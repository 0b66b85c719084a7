"""jobs.output_bucket, jobs.output_key, tenants.allowed_outputs, batches.reported_at and callback.

Cut-outs where the tenant wants them, and a results manifest per finished batch, announced to
the batch's own callback URL.

A job may name its output bucket and a key template over its source key; the template is
resolved at submit and the key stored, so the same job always writes the same object
(pipeline/output_keys.py). A tenant's ``allowed_outputs`` lists the ``bucket/prefix`` places,
beyond its own area of the service's bucket, where it may have cut-outs written. All three are
nullable columns without a default: a catalogue change on PostgreSQL (no rewrite), and a job
or tenant from before this revision keeps its old behaviour (the default key; no other output).

``batches.reported_at`` is when a batch's report (pipeline/batch_report.py) was last written;
NULL makes it due once the batch has finished. Batches from before this revision are marked
reported as of the upgrade, so the reconciler does not write a report for every old batch at
once; a redrive of one of them clears the mark, and its report is written when it finishes.
``batches.callback_*`` are the batch's report callback and its delivery state, as a job's.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from pipeline.adapters.ledger.schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JSONDoc = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("jobs", sa.Column("output_bucket", sa.Text(), nullable=True))
    op.add_column("jobs", sa.Column("output_key", sa.Text(), nullable=True))
    op.add_column("tenants", sa.Column("allowed_outputs", JSONDoc, nullable=True))
    op.add_column("batches", sa.Column("reported_at", UTCDateTime(), nullable=True))
    batches = sa.table("batches", sa.column("reported_at", UTCDateTime()))
    op.execute(sa.update(batches).values(reported_at=sa.func.current_timestamp()))
    op.add_column("batches", sa.Column("callback_url", sa.Text(), nullable=True))
    op.add_column("batches", sa.Column("callback_state", sa.String(16), nullable=True))
    op.add_column("batches", sa.Column("callback_attempts", sa.Integer(), nullable=False,
                                       server_default="0"))
    op.add_column("batches", sa.Column("callback_next_at", UTCDateTime(), nullable=True))
    op.add_column("batches", sa.Column("callback_error", sa.Text(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMNs (SQLite 3.35+): rebuilding tenants would trip the jobs' foreign keys.
    for column in ("callback_error", "callback_next_at", "callback_attempts", "callback_state",
                   "callback_url", "reported_at"):
        op.drop_column("batches", column)
    op.drop_column("tenants", "allowed_outputs")
    op.drop_column("jobs", "output_key")
    op.drop_column("jobs", "output_bucket")
