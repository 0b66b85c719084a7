"""The hot-path statements of the ledger, built once per engine and reused.

Building a SQLAlchemy statement (a CTE especially) costs more Python time than the database
spends running it, so claim, heartbeat and complete are prepared here with bind parameters;
SQLAlchemy's compiled cache and psycopg's prepared statements then make each call cheap.

On PostgreSQL every job move is ONE statement that also writes its event row (a data-modifying
CTE), run in autocommit: a single round trip. SQLite writes the event in a second statement of
the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, literal, null, select, update

from pipeline.adapters.ledger.schema import JSONDoc, UTCDateTime, job_events, jobs, status_is
from pipeline.jobs import JobStatus

Q, R = JobStatus.QUEUED.value, JobStatus.RUNNING.value
EVENT_COLUMNS = [
    "job_id", "at", "action", "from_status", "to_status", "attempt", "worker", "error_code",
    "error_message",
]
LEASE_CLEARED = {"lease_token": None, "lease_expires_at": None}

# Bind parameters shared by the statements. Names must differ from column names.
NOW = bindparam("p_now", type_=UTCDateTime())
EXPIRES = bindparam("p_expires", type_=UTCDateTime())
JOB_ID = bindparam("p_job_id", type_=jobs.c.id.type)
TOKEN = bindparam("p_token", type_=jobs.c.lease_token.type)
NEW_TOKEN = bindparam("p_new_token", type_=jobs.c.lease_token.type)
WORKER = bindparam("p_worker", type_=jobs.c.leased_by.type)
RESULT = bindparam("p_result", type_=JSONDoc)
LIMIT: Any = bindparam("p_limit")
BATCH = bindparam("p_batch", type_=jobs.c.batch_id.type)


@dataclass(frozen=True, slots=True)
class Move:
    """A prepared ``UPDATE ... RETURNING`` of job rows, and the event it logs per row."""

    statement: Any
    action: str
    from_status: str
    with_error: bool
    logs_itself: bool


def _lease() -> dict[str, Any]:
    return {
        "status": R, "lease_token": NEW_TOKEN, "lease_expires_at": EXPIRES, "leased_by": WORKER,
        "attempts": jobs.c.attempts + 1, "updated_at": NOW,
    }


def _move(stmt: Any, action: str, from_status: str, *, pg: bool, with_error: bool = False) -> Move:
    if not pg:
        return Move(stmt, action, from_status, with_error, logs_itself=False)
    moved = stmt.cte("moved")
    logged = insert(job_events).from_select(
        EVENT_COLUMNS,
        select(
            moved.c.id, NOW, literal(action), literal(from_status), moved.c.status,
            moved.c.attempts, moved.c.leased_by,
            moved.c.last_error_code if with_error else null(),
            moved.c.last_error_message if with_error else null(),
        ),
    ).cte("logged")
    return Move(select(moved).add_cte(logged), action, from_status, with_error, logs_itself=True)


class Statements:
    def __init__(self, *, pg: bool) -> None:
        self.claim = _move(
            update(jobs)
            .where(jobs.c.id == JOB_ID, jobs.c.status == Q, jobs.c.not_before <= NOW)
            .values(**_lease())
            .returning(*jobs.c),
            "claimed", Q, pg=pg,
        )
        self._pg = pg
        self._claim_next = {batch: self._build_claim_next(batch) for batch in (False, True)}
        self.complete = _move(
            update(jobs)
            .where(jobs.c.id == JOB_ID, jobs.c.lease_token == TOKEN, jobs.c.status == R)
            .values(
                status=JobStatus.SUCCEEDED.value, result=RESULT, finished_at=NOW, updated_at=NOW,
                last_error_code=None, last_error_message=None, outage_since=None,
                **LEASE_CLEARED,
            )
            .returning(*jobs.c),
            "completed", R, pg=pg,
        )
        self.heartbeat = (
            update(jobs)
            .where(jobs.c.id == JOB_ID, jobs.c.lease_token == TOKEN, jobs.c.status == R)
            .values(lease_expires_at=EXPIRES, updated_at=NOW)
            .returning(jobs.c.lease_expires_at)
        )

    def claim_next(self, *, batch: bool) -> tuple[Any, Move]:
        """(the due-jobs query, the claiming move), optionally limited to one batch."""
        return self._claim_next[batch]

    def _build_claim_next(self, batch: bool) -> tuple[Any, Move]:
        conds = [status_is(JobStatus.QUEUED), jobs.c.not_before <= NOW]
        if batch:
            conds.append(jobs.c.batch_id == BATCH)
        due = (
            select(jobs.c.id)
            .where(*conds)
            .order_by(jobs.c.priority.desc(), jobs.c.not_before, jobs.c.id)
            .limit(LIMIT)
            .with_for_update(skip_locked=True)
        )
        if self._pg:
            # A locking CTE runs once; `IN (subquery LIMIT n)` may be re-run per row and so
            # claim more than `limit` jobs.
            chosen = due.cte("due")
            pick = update(jobs).where(jobs.c.id == chosen.c.id, jobs.c.status == Q)
        else:
            # SQLite: the ids are selected first (the transaction holds the write lock).
            pick = update(jobs).where(
                jobs.c.id.in_(bindparam("p_ids", expanding=True)), jobs.c.status == Q
            )
        move = _move(pick.values(**_lease()).returning(*jobs.c), "claimed", Q, pg=self._pg)
        return due, move
