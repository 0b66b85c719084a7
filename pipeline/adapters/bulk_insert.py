"""Bulk job insertion: COPY on PostgreSQL, chunked executemany on SQLite.

Duplicates fold in both directions: a line repeated inside the input and a line matching a job
already stored are skipped by ``ON CONFLICT (tenant_id, idempotency_key) DO NOTHING``; within one
statement the first occurrence wins.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import sqlite

from pipeline.adapters.schema import jobs
from pipeline.jobs import JobSpec, canonical_json, dedupe_key_of, new_id_text

# Columns that differ per line; the rest of a row is the same for the whole call.
VARYING = (
    "id", "source_bucket", "source_key", "source_version", "options", "model",
    "idempotency_key", "priority",
)
SQLITE_CHUNK = 5_000
BULK_TIMEOUT_SECONDS = 900


def insert_jobs(
    conn: Connection, specs: Iterable[JobSpec], constants: Mapping[str, Any]
) -> tuple[int, int]:
    """Insert the specs with the shared ``constants``; returns (received, inserted)."""
    if conn.dialect.name == "postgresql":
        return _copy_postgres(conn, specs, constants)
    return _executemany_sqlite(conn, specs, constants)


def _varying(spec: JobSpec, options_json: str) -> tuple[Any, ...]:
    key = spec.idempotency_key or dedupe_key_of(spec.identity(options_json))
    return (
        new_id_text(), spec.bucket, spec.key, spec.version, options_json, spec.model, key,
        spec.priority,
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
    with raw.cursor() as cur:
        # A bulk insert is bounded by its input, not by the per-statement timeout of the
        # interactive path; it still has a ceiling.
        cur.execute(f"SET LOCAL statement_timeout = '{BULK_TIMEOUT_SECONDS}s'")
        cur.execute(
            f"CREATE TEMP TABLE {staging} (id uuid, source_bucket text,"
            " source_key text, source_version text, options jsonb, model text,"
            " idempotency_key text, priority smallint) ON COMMIT DROP"
        )
        with cur.copy(f"COPY {staging} ({', '.join(VARYING)}) FROM STDIN") as copy:
            for spec, options in _options_json(specs):
                copy.write_row(_varying(spec, options))
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
    # SQLAlchemy binds ids as UUID objects and options as the mapping itself, not as text.
    row = {**constants, **dict(zip(VARYING, _varying(spec, options_json), strict=True))}
    return {**row, "id": uuid.UUID(row["id"]), "options": dict(spec.options)}


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
    return received, inserted
