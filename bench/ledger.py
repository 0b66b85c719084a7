"""Ledger benchmark on PostgreSQL: bulk submission, then claim→complete with K workers.

    python bench/ledger.py [--jobs 1000000] [--workers 2 4] [--claim-batch 1 10] [--work-jobs 20000]

Creates a scratch database (dropped at the end) on the server given by --server, migrates it,
and prints jobs/s for each phase. Figures go to docs/PERFORMANCE.md with the machine they came from.

The bulk phase is set against its physical limit, measured in the same run: the same COPY stream
(the same rows, written by the same row writer) straight into an unindexed twin of ``jobs``
(``raw_copy``). It prints both rates and their ratio, bulk submit ÷ raw COPY. ``--streams K``
adds an experiment: the bulk phase cut into K parts submitted in parallel, against K parallel
raw COPY streams (``bench_parallel_bulk``; the product's submit_many stays one transaction).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import Engine, create_engine, text

# The very row writer submit_many streams with, so both COPY streams carry the same bytes.
from pipeline.adapters.ledger.bulk_insert import VARYING, _options_json, _varying
from pipeline.adapters.ledger.database import make_engine, upgrade
from pipeline.adapters.ledger.sql import SqlLedger
from pipeline.jobs import JobSpec

OPTIONS = {"format": "png", "channels": "rgba"}


def manifest(n: int, prefix: str, start: int = 0) -> Iterator[JobSpec]:
    # One options object shared by every line, as a parsed manifest with defaults gives.
    return (JobSpec("catalog", f"{prefix}/{i:08d}.jpg", options=OPTIONS)
            for i in range(start, n))


RAW_TABLE = "jobs_raw_copy"


def _libpq_url(engine: Engine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def checkpoint(engine: Engine) -> None:
    """Write out the dirty pages of earlier phases, so that each timed phase starts alike."""
    with psycopg.connect(_libpq_url(engine), autocommit=True) as conn:
        conn.execute("CHECKPOINT")


def copy_rows(specs: Iterable[JobSpec]) -> Iterator[tuple[Any, ...]]:
    """The rows submit_many COPYs for these specs (no callback, no explicit key), in order."""
    for spec, options in _options_json(specs):
        yield _varying(spec, options, None)


def render_seconds(specs: Iterable[JobSpec]) -> float:
    """Seconds to write the COPY rows in Python alone (ids, dedupe keys), no database."""
    start = time.perf_counter()
    for _ in copy_rows(specs):
        pass
    return time.perf_counter() - start


@contextmanager
def twin(engine: Engine, like_batch: uuid.UUID) -> Iterator[None]:
    """An unindexed twin of ``jobs`` (``RAW_TABLE``) for the block; dropped at its end.

    The twin has the columns and defaults of ``jobs`` and its persistence (logged, or unlogged
    if ``jobs`` is), but no index, key, foreign key or trigger (``LIKE`` keeps NOT NULL). The
    columns submit_many does not COPY default to the values of a stored job of ``like_batch``,
    so the stored rows match too.
    """
    table = sql.Identifier(RAW_TABLE)
    with psycopg.connect(_libpq_url(engine), autocommit=True) as conn:
        cur = conn.cursor()
        persistence = cur.execute(
            "SELECT relpersistence FROM pg_class WHERE oid = 'jobs'::regclass").fetchone()
        assert persistence is not None
        unlogged = sql.SQL("UNLOGGED " if persistence[0] == "u" else "")
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        cur.execute(sql.SQL("CREATE {}TABLE {} (LIKE jobs INCLUDING DEFAULTS)")
                    .format(unlogged, table))
        cur.execute("SELECT * FROM jobs WHERE batch_id = %s LIMIT 1", (like_batch,))
        sample = cur.fetchone()
        assert sample is not None and cur.description is not None
        for column, value in zip((d.name for d in cur.description), sample, strict=True):
            if column not in VARYING and column != "txid":  # txid: its default, as in jobs
                literal = Jsonb(value) if isinstance(value, dict | list) else value
                cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                    table, sql.Identifier(column), sql.Literal(literal)))
    try:
        yield
    finally:
        with psycopg.connect(_libpq_url(engine), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


def copy_into_twin(conn: psycopg.Connection[Any], specs: Iterable[JobSpec]) -> int:
    """COPY the specs' rows into the twin in one transaction (an autocommit ``conn``); rows."""
    columns = sql.SQL(", ").join(map(sql.Identifier, VARYING))
    rows = 0
    with conn.transaction(), conn.cursor() as cur, cur.copy(
            sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(RAW_TABLE), columns)) as copy:
        for row in copy_rows(specs):
            copy.write_row(row)
            rows += 1
    return rows


def twin_rows(engine: Engine) -> int:
    with psycopg.connect(_libpq_url(engine), autocommit=True) as conn:
        found = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(RAW_TABLE))).fetchone()
    assert found is not None
    return int(found[0])


def raw_copy(engine: Engine, specs: Iterable[JobSpec], like_batch: uuid.UUID) -> tuple[int, float]:
    """COPY the specs' rows into an unindexed ``twin`` of ``jobs`` in one transaction;
    (rows, seconds). The twin is dropped before returning."""
    with twin(engine, like_batch), psycopg.connect(_libpq_url(engine), autocommit=True) as conn:
        checkpoint(engine)
        start = time.perf_counter()
        rows = copy_into_twin(conn, specs)
        elapsed = time.perf_counter() - start
        assert twin_rows(engine) == rows
    return rows, elapsed


def print_ratio(what: str, n: int, submit_s: float, raw_s: float, render_s: float) -> None:
    """The lines the ratio is read from (bench.intake prints them too)."""
    print(f"raw COPY:         {n:>9,} rows in {raw_s:6.2f} s = {n / raw_s:>9,.0f} rows/s "
          f"(unindexed twin of jobs; rows written in Python alone: {render_s:.2f} s)")
    print(f"ratio {what} / raw COPY: {raw_s / submit_s:.3f} (goal ≥ 0.33 at 1,000,000)")


def bench_bulk(url: str, n: int) -> float:
    engine = make_engine(url)
    ledger = SqlLedger(engine)
    batch = ledger.create_batch(label="bench")
    checkpoint(engine)
    t0 = time.perf_counter()
    result = ledger.submit_many(manifest(n, "bulk"), batch_id=batch)
    elapsed = time.perf_counter() - t0
    assert result.inserted == n, result
    print(f"bulk submit:      {n:>9,} jobs in {elapsed:6.2f} s = {n / elapsed:>9,.0f} jobs/s")
    _, raw_elapsed = raw_copy(engine, manifest(n, "bulk"), batch)
    print_ratio("bulk submit", n, elapsed, raw_elapsed, render_seconds(manifest(n, "bulk")))
    # The same manifest again: every line is a duplicate of a stored job.
    t1 = time.perf_counter()
    again = ledger.submit_many(manifest(min(n, 100_000), "bulk"), batch_id=batch)
    dup_elapsed = time.perf_counter() - t1
    assert again.inserted == 0
    print(f"  resubmit (dups): {again.received:>8,} lines in {dup_elapsed:6.2f} s = "
          f"{again.received / dup_elapsed:>9,.0f} lines/s, 0 inserted")
    ledger.close()
    return n / elapsed


def _submit_part(url: str, prefix: str, part: tuple[int, int], batch: uuid.UUID, start: float,
                 out: mp.Queue) -> None:  # type: ignore[type-arg]
    ledger = SqlLedger(make_engine(url, pool_size=1))
    ledger.engine.connect().close()  # the pool keeps it: connected before the start
    while time.time() < start:
        time.sleep(0.001)
    result = ledger.submit_many(manifest(part[1], prefix, part[0]), batch_id=batch)
    out.put((result.inserted, time.time()))
    ledger.close()


def _copy_part(url: str, prefix: str, part: tuple[int, int], batch: uuid.UUID, start: float,
               out: mp.Queue) -> None:  # type: ignore[type-arg]
    with psycopg.connect(_libpq_url(make_engine(url)), autocommit=True) as conn:
        while time.time() < start:
            time.sleep(0.001)
        rows = copy_into_twin(conn, manifest(part[1], prefix, part[0]))
        out.put((rows, time.time()))


def run_together(target: Callable[..., None], arg_lists: list[tuple[Any, ...]], *,
                 lead: float, timeout: float) -> tuple[list[tuple[int, float]], float]:
    """One spawned process per ``arg_lists`` entry, each calling ``target(*args, start, out)``
    and putting (count, end time) on ``out``; they begin together at ``start``, ``lead``
    seconds from now (time to import and connect). Returns their results and ``start``."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start = time.time() + lead
    procs = [ctx.Process(target=target, args=(*args, start, out)) for args in arg_lists]
    for p in procs:
        p.start()
    results = [out.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join()
    return results, start


def empty_jobs(url: str) -> None:
    """An empty, vacuumed ``jobs``: a mass UPDATE or INSERT of an earlier phase would leave dead
    entries in its indexes for the next phase to step over until vacuumed."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("TRUNCATE job_events, jobs"))
        conn.execute(text("VACUUM ANALYZE jobs"))
    engine.dispose()


def _in_parallel(target: Callable[..., None], url: str, n: int, streams: int,
                 batch: uuid.UUID) -> float:
    """Seconds for ``streams`` processes to run ``target`` on contiguous parts of the manifest,
    from a common start to the last one's end."""
    cuts = [n * k // streams for k in range(streams + 1)]
    results, start = run_together(
        target, [(url, "parallel", (cuts[k], cuts[k + 1]), batch) for k in range(streams)],
        lead=3.0, timeout=900)
    assert sum(r[0] for r in results) == n, (results, n)
    return float(max(r[1] for r in results) - start)


def bench_parallel_bulk(url: str, n: int, streams: int) -> None:
    """An experiment, not the product's path: the manifest cut into ``streams`` contiguous
    parts, each its own ``submit_many`` (its own transaction) in a process of its own, into an
    emptied table; then the same parts COPYed into the twin, as many streams at once.
    Idempotent per part (a part run twice folds), but not one transaction."""
    empty_jobs(url)
    engine = make_engine(url)
    ledger = SqlLedger(engine)
    batch = ledger.create_batch(label="bench parallel")
    checkpoint(engine)
    submit_s = _in_parallel(_submit_part, url, n, streams, batch)
    print(f"bulk submit, {streams} streams: {n:>9,} jobs in {submit_s:6.2f} s = "
          f"{n / submit_s:>9,.0f} jobs/s")
    with twin(engine, batch):
        checkpoint(engine)
        raw_s = _in_parallel(_copy_part, url, n, streams, batch)
        assert twin_rows(engine) == n
    print(f"raw COPY, {streams} streams:    {n:>9,} rows in {raw_s:6.2f} s = "
          f"{n / raw_s:>9,.0f} rows/s")
    print(f"ratio bulk submit / raw COPY, {streams} streams each: {raw_s / submit_s:.3f}")
    ledger.close()


def _worker(url: str, claim_batch: int, start: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    ledger = SqlLedger(make_engine(url, pool_size=2))
    name = f"bench-{os.getpid()}"
    done = 0
    while time.time() < start:
        time.sleep(0.001)
    while claims := ledger.claim_next(claim_batch, worker=name):
        for c in claims:
            ledger.complete(c.job.id, c.token, {"ok": True})
        done += len(claims)
    out.put((done, time.time()))
    ledger.close()


def bench_claim_complete(url: str, n: int, workers: int, claim_batch: int) -> float:
    # Start from an empty table: a mass UPDATE of the bulk phase's million rows would leave a
    # million dead entries in the claim index for every claim to step over until vacuumed.
    empty_jobs(url)
    ledger = SqlLedger(make_engine(url))
    ledger.submit_many(manifest(n, f"work-{uuid.uuid4().hex[:6]}"))
    ledger.close()
    results, start = run_together(_worker, [(url, claim_batch)] * workers, lead=2.0, timeout=600)
    total = sum(r[0] for r in results)
    elapsed = max(r[1] for r in results) - start
    assert total == n, (total, n)
    rate = float(total / elapsed)
    print(f"claim→complete:   {total:>9,} jobs, {workers} workers, claim batch {claim_batch}: "
          f"{elapsed:6.2f} s = {rate:>7,.0f} jobs/s")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    ap.add_argument("--jobs", type=int, default=1_000_000, help="bulk submission size")
    ap.add_argument("--work-jobs", type=int, default=20_000, help="jobs for claim→complete")
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 4],
                    help="worker process counts (K) to try")
    ap.add_argument("--claim-batch", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--streams", type=int, default=1,
                    help="also try the bulk submission cut into this many parallel parts "
                    "(an experiment: one transaction per part)")
    args = ap.parse_args()

    name = f"clipline_bench_{os.getpid()}"
    admin = create_engine(f"{args.server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{args.server}/{name}"
    try:
        upgrade(url)
        print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f},"
              f" Python {platform.python_version()}")
        bench_bulk(url, args.jobs)
        if args.streams > 1:
            bench_parallel_bulk(url, args.jobs, args.streams)
        for workers in args.workers:
            for batch in args.claim_batch:
                bench_claim_complete(url, args.work_jobs, workers, batch)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
