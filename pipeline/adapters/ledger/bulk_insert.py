"""Bulk job insertion: COPY on PostgreSQL, chunked executemany on SQLite.

Duplicates fold in both directions: a line repeated inside the input and a line matching a job
already stored are skipped by ``ON CONFLICT (tenant_id, idempotency_key) DO NOTHING``; within one
statement the first occurrence wins. A line with an explicit idempotency key carries its request
(``JobSpec.request``); if the job its key names was made from another request, the whole call
is refused with ``IdempotencyConflict`` (the caller's transaction rolls back).

Every row gets the inserting transaction's ``txid``: PostgreSQL's column default, or the number
the caller put in ``constants`` (SQLite).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import sqlite

from pipeline.adapters.ledger.rows import refuse_request, row_request
from pipeline.adapters.ledger.schema import jobs
from pipeline.jobs import JobSpec, canonical_json, dedupe_key_of, new_id_text

# Columns that differ per line; the rest of a row is the same for the whole call.
VARYING = (
    "id", "source_bucket", "source_key", "source_version", "options", "model",
    "idempotency_key", "priority", "request", "output_bucket", "output_key",
)
# The stored side of an explicit key's line, for refuse_request.
STORED = ("source_bucket", "source_key", "source_version", "options", "model", "callback_url",
          "request")
SQLITE_CHUNK = 5_000
BULK_TIMEOUT_SECONDS = 900


def insert_jobs(
    conn: Connection, specs: Iterable[JobSpec], constants: Mapping[str, Any]
) -> tuple[int, int]:
    """Insert the specs with the shared ``constants``; returns (received, inserted)."""
    if conn.dialect.name == "postgresql":
        return _copy_postgres(conn, specs, constants)
    return _executemany_sqlite(conn, specs, constants)


def _varying(spec: JobSpec, options_json: str, callback_url: str | None) -> tuple[Any, ...]:
    key = spec.idempotency_key or dedupe_key_of(spec.identity(options_json))
    request = canonical_json(spec.request(callback_url)) if spec.explicit_key else None
    return (
        new_id_text(), spec.bucket, spec.key, spec.version, options_json, spec.model, key,
        spec.priority, request, spec.output_bucket, spec.output_key,
    )


def _options_json(specs: Iterable[JobSpec]) -> Iterator[tuple[JobSpec, str]]:
    # Manifests usually repeat one options mapping; serialise each distinct object once.
    last: Mapping[str, Any] | None = None
    text = "{}"
    for spec in specs:
        if spec.options is not last:
            last, text = spec.options, canonical_json(dict(spec.options))
        yield spec, text


def _copy_postgres(
    conn: Connection, specs: Iterable[JobSpec], constants: Mapping[str, Any]
) -> tuple[int, int]:
    raw = conn.connection.driver_connection
    assert raw is not None
    staging = "clipline_jobs_in"
    received = 0
    hook, explicit = constants.get("callback_url"), False
    with raw.cursor() as cur:
        # A bulk insert is bounded by its input, not by the per-statement timeout of the
        # interactive path; it still has a ceiling.
        cur.execute(f"SET LOCAL statement_timeout = '{BULK_TIMEOUT_SECONDS}s'")
        cur.execute(
            f"CREATE TEMP TABLE {staging} (id uuid, source_bucket text,"
            " source_key text, source_version text, options jsonb, model text,"
            " idempotency_key text, priority smallint, request jsonb, output_bucket text,"
            " output_key text) ON COMMIT DROP"
        )
        with cur.copy(f"COPY {staging} ({', '.join(VARYING)}) FROM STDIN") as copy:
            for spec, options in _options_json(specs):
                copy.write_row(_varying(spec, options, hook))
                explicit = explicit or spec.explicit_key
                received += 1
        names = [*VARYING, *constants]
        params = {f"c_{k}": v for k, v in constants.items()}
        const_sql = ", ".join(f"%(c_{k})s" for k in constants)
        cur.execute(
            f"INSERT INTO jobs ({', '.join(names)})"
            # A freshly filled temporary table is scanned in the order it was written, so the
            # first of two equal lines is the one kept.
            f" SELECT {', '.join(VARYING)}, {const_sql} FROM {staging}"
            " ON CONFLICT (tenant_id, idempotency_key) DO NOTHING",
            _adapt(params, conn),
        )
        inserted = cur.rowcount
        if explicit:
            # Explicit keys whose job (stored before, or by an earlier line) has another request.
            cur.execute(
                f"SELECT j.id, j.idempotency_key, {', '.join(f'j.{c}' for c in STORED)},"
                f" s.request FROM {staging} s JOIN jobs j ON j.tenant_id = %(t)s"
                " AND j.idempotency_key = s.idempotency_key"
                " WHERE s.request IS NOT NULL AND j.request IS DISTINCT FROM s.request",
                {"t": constants["tenant_id"]},
            )
            for job_id, key, *stored, sent in cur:
                refuse_request(job_id, key, row_request(*stored), sent)
    return received, inserted


def _adapt(params: dict[str, Any], conn: Connection) -> dict[str, Any]:
    """Bind values through the column types SQLAlchemy would use (UTC timestamps, UUIDs)."""
    out = {}
    for name, value in params.items():
        column = jobs.c[name.removeprefix("c_")]
        processor = column.type.bind_processor(conn.dialect)
        out[name] = processor(value) if processor else value
    return out


def _sqlite_row(
    constants: Mapping[str, Any], spec: JobSpec, options_json: str
) -> dict[str, Any]:
    # SQLAlchemy binds ids as UUID objects and JSON as the mapping itself, not as text.
    varying = _varying(spec, options_json, constants.get("callback_url"))
    row = {**constants, **dict(zip(VARYING, varying, strict=True))}
    request = spec.request(constants.get("callback_url")) if spec.explicit_key else None
    return {**row, "id": uuid.UUID(row["id"]), "options": dict(spec.options),
            "request": request}


def _refuse_sqlite(conn: Connection, tenant: str, rows: list[dict[str, Any]]) -> None:
    """Explicit keys of ``rows`` (just inserted or folded) whose job has another request."""
    sent = [r for r in rows if r["request"] is not None]
    for start in range(0, len(sent), 500):
        chunk = sent[start:start + 500]
        query = select(jobs.c.idempotency_key, jobs.c.id, *(jobs.c[c] for c in STORED)).where(
            jobs.c.tenant_id == tenant,
            jobs.c.idempotency_key.in_({r["idempotency_key"] for r in chunk}))
        stored = {key: (job_id, row_request(*rest)) for key, job_id, *rest in conn.execute(query)}
        for row in chunk:
            job_id, request = stored[row["idempotency_key"]]
            refuse_request(job_id, row["idempotency_key"], request, row["request"])


def _executemany_sqlite(
    conn: Connection, specs: Iterable[JobSpec], constants: Mapping[str, Any]
) -> tuple[int, int]:
    stmt = sqlite.insert(jobs).on_conflict_do_nothing(
        index_elements=["tenant_id", "idempotency_key"]
    )
    received = inserted = 0
    iterator = iter(specs)
    while chunk := list(islice(iterator, SQLITE_CHUNK)):
        rows = [
            _sqlite_row(constants, spec, options)
            for spec, options in _options_json(chunk)
        ]
        inserted += conn.execute(stmt, rows).rowcount
        received += len(rows)
        _refuse_sqlite(conn, constants["tenant_id"], rows)
    return received, inserted
