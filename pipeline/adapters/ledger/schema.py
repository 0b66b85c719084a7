"""The ledger's tables, for SQLAlchemy Core and Alembic alike (PostgreSQL and SQLite).

Statuses are plain strings guarded by a CHECK constraint rather than a PostgreSQL ENUM, so a new
status is a one-line migration on both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
    false,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from pipeline.jobs import JobStatus

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on PostgreSQL (timestamptz) and SQLite (text) alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use timezone-aware UTC")
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: store one fixed, zone-less format.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONDoc = JSON().with_variant(JSONB(), "postgresql")
# The same, with None stored as SQL NULL rather than JSON null.
NullableJSONDoc = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
STATUSES = ", ".join(f"'{s.value}'" for s in JobStatus)
NOW = text("CURRENT_TIMESTAMP")
UNPUBLISHED = "status = 'queued' AND (published_at IS NULL OR published_at < not_before)"
PG_TXID = text("(pg_current_xact_id()::text)::bigint")

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False, server_default=NOW),
    # The S3 sources the tenant may submit: a list of "bucket/prefix"; NULL or [] allows none.
    Column("allowed_sources", JSONDoc, nullable=True),
    # Every source: only ever set deliberately (`clipline tenants create ID --allow-any`).
    Column("allow_any", Boolean, nullable=False, server_default=false()),
    # Signs completion callbacks (HMAC-SHA256); generated with the tenant.
    Column("callback_secret", String(64), nullable=True),
    # Where else than its own area of the output bucket the tenant may have cut-outs written:
    # a list of "bucket/prefix"; NULL or [] allows none (pipeline/output_keys.py).
    Column("allowed_outputs", JSONDoc, nullable=True),
)

# API keys: only a SHA-256 of the key is kept; the key itself is shown once, at creation.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("label", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

batches = Table(
    "batches",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("label", Text, nullable=True),
    Column("meta", JSONDoc, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    # When the results manifest was last written for the batch's last finish; NULL: due once
    # every job is final (a redrive clears it). See pipeline/batch_report.py.
    Column("reported_at", UTCDateTime, nullable=True),
    # Where to POST once the report is written (the batch's own callback, not its jobs'), and
    # how delivery is going, as for a job's (pipeline/batch_callbacks.py).
    Column("callback_url", Text, nullable=True),
    Column("callback_state", String(16), nullable=True),
    Column("callback_attempts", Integer, nullable=False, server_default="0"),
    Column("callback_next_at", UTCDateTime, nullable=True),
    Column("callback_error", Text, nullable=True),
    Index(None, "tenant_id", "created_at"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", String(64), ForeignKey("tenants.id"), nullable=False),
    Column("batch_id", Uuid, ForeignKey("batches.id"), nullable=True),
    Column("source_bucket", Text, nullable=False),
    Column("source_key", Text, nullable=False),
    Column("source_version", Text, nullable=True),
    Column("options", JSONDoc, nullable=False),
    Column("model", String(64), nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    Column("priority", SmallInteger, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False),
    Column("not_before", UTCDateTime, nullable=False),
    Column("lease_token", Uuid, nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("leased_by", String(255), nullable=True),
    Column("last_error_code", String(64), nullable=True),
    Column("last_error_message", Text, nullable=True),
    Column("result", JSONDoc, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    # When a wake-up message for the job's current wait was sent (or, for a delayed one, is due).
    # The reconciler re-publishes what this says is missing; see pipeline/reconcile.py.
    Column("published_at", UTCDateTime, nullable=True),
    # Completion callback: where to POST the finished job, and how delivery is going
    # (NULL: no callback; pending; delivered; failed). See pipeline/callbacks.py.
    Column("callback_url", Text, nullable=True),
    Column("callback_state", String(16), nullable=True),
    Column("callback_attempts", Integer, nullable=False, server_default="0"),
    Column("callback_next_at", UTCDateTime, nullable=True),
    Column("callback_error", Text, nullable=True),
    # When a shared dependency (Triton, S3, the database) began failing the job, for the
    # outage budget; NULL unless its latest failures were all outages. See pipeline/retry.py.
    Column("outage_since", UTCDateTime, nullable=True),
    # The number of the transaction that inserted the row: listings go in (txid, id) order,
    # which a transaction that commits late cannot slip behind (see pipeline/paging.py).
    # PostgreSQL fills it in; on SQLite the ledger takes the next number inside its write
    # transaction (writers take turns there), so the default below is PostgreSQL's only.
    Column("txid", BigInteger, nullable=False, server_default=PG_TXID),
    # What the client sent (JobSpec.request), kept for a job made under an explicit
    # idempotency key so that a reuse with any difference is refused, naming it.
    Column("request", NullableJSONDoc, nullable=True),
    # Where the cut-out goes, resolved at submit (pipeline/output_keys.py): NULL bucket is the
    # service's output bucket, NULL key the default <prefix>/<tenant>/<job id>.<ext>.
    Column("output_bucket", Text, nullable=True),
    Column("output_key", Text, nullable=True),
    CheckConstraint(f"status IN ({STATUSES})", name="status"),
    CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
    # Idempotent intake: one job per key per tenant.
    Index(None, "tenant_id", "idempotency_key", unique=True),
    # Claiming: the due queued jobs, best priority first. Partial, so it stays small.
    Index(
        "ix_jobs_claim",
        text("priority DESC"),
        "not_before",
        "id",
        postgresql_where=text("status = 'queued'"),
        sqlite_where=text("status = 'queued'"),
    ),
    # Re-publishing: queued jobs no message was sent for since they became due (a retry after a
    # long backoff, a reaped lease, a redrive). Partial, so a large backlog does not enter it.
    Index(
        "ix_jobs_unpublished",
        "not_before",
        postgresql_where=text(UNPUBLISHED),
        sqlite_where=text(UNPUBLISHED),
    ),
    # Callback delivery: the pending ones by when they are due.
    Index(
        "ix_jobs_callbacks_due",
        "callback_next_at",
        postgresql_where=text("callback_state = 'pending'"),
        sqlite_where=text("callback_state = 'pending'"),
    ),
    # Reaping: running jobs by lease expiry.
    Index(
        "ix_jobs_lease",
        "lease_expires_at",
        postgresql_where=text("status = 'running'"),
        sqlite_where=text("status = 'running'"),
    ),
    # Listings, in (txid, id) order: everything (and SQLite's next txid), a tenant's jobs, a
    # tenant's jobs by status, a batch's jobs. The batch's index ends with the status, so a
    # listing by status filters in the index, and counting a batch by status reads only it.
    Index(None, "txid", "id"),
    Index(None, "tenant_id", "txid", "id"),
    Index(None, "tenant_id", "status", "txid", "id"),
    Index(None, "batch_id", "txid", "id", "status"),
    # Dead letters by reason, in listing order.
    Index(
        "ix_jobs_dead_reason",
        "tenant_id",
        "last_error_code",
        "txid",
        "id",
        postgresql_where=text("status = 'dead'"),
        sqlite_where=text("status = 'dead'"),
    ),
)

job_events = Table(
    "job_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("job_id", Uuid, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("action", String(32), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(255), nullable=True),
    Column("error_code", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Index(None, "job_id", "id"),
)


def status_is(status: JobStatus) -> Any:
    """``jobs.status = '<status>'`` with the value inline, not bound: the partial indexes
    (claim, lease, dead letters) can serve only a query whose predicate the planner can match
    against theirs, and a prepared statement's generic plan cannot see a bound value."""
    return jobs.c.status == literal_column(f"'{status.value}'")


def row_dict(row: Any) -> dict[str, Any]:
    return dict(row._mapping)
