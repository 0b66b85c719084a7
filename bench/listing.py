"""Listing jobs on PostgreSQL: the plans and times of ``page_jobs``, and what its indexes cost
a bulk insert.

    python -m bench.listing [--jobs 200000] [--bulk 300000] [--server URL]

Fills a scratch database (dropped at the end) with ``--jobs`` jobs of three tenants in ten
batches (30% succeeded, some dead), then, for each listing the product runs (the API's by
tenant, status, reason and batch; ``queued_pages``; the embedded run's), walks 20 pages of 100
and prints the median time of the 21st page and its ``EXPLAIN (ANALYZE, BUFFERS)``. Last, a
``submit_many`` of ``--bulk`` lines into empty ledgers with the listing indexes of migration
0005 and with those of 0004, twice each, alternating.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from typing import Any

from sqlalchemy import create_engine, event, text

from pipeline.adapters.ledger.database import make_engine, upgrade
from pipeline.adapters.ledger.sql import SqlLedger
from pipeline.jobs import JobSpec, JobStatus

SERVER = os.environ.get("CLIPLINE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
OPTIONS = {"format": "png", "channels": "rgba"}


def scratch() -> tuple[str, str]:
    name = f"clipline_listing_{uuid.uuid4().hex[:8]}"
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return name, f"{SERVER}/{name}"


def drop(name: str) -> None:
    admin = create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def fill(ledger: SqlLedger, n: int) -> dict[tuple[str, int], uuid.UUID]:
    for t in ("acme", "globex", "initech"):
        ledger.ensure_tenant(t)
    batches = {}
    per = n // 10
    for i in range(10):
        tenant = ("acme", "globex", "initech")[i % 3]
        b = ledger.create_batch(tenant)
        batches[(tenant, i)] = b
        ledger.submit_many((JobSpec("catalog", f"{i}/{k:08d}.jpg", options=OPTIONS)
                            for k in range(per)), tenant=tenant, batch_id=b)
    with ledger.engine.begin() as conn:
        # 30% succeeded, 2% dead with a reason, the rest queued
        conn.execute(text("UPDATE jobs SET status = 'succeeded' WHERE random() < 0.30"))
        conn.execute(text("UPDATE jobs SET status = 'dead', last_error_code = 'not_an_image'"
                          " WHERE status = 'queued' AND random() < 0.03"))
    with ledger.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE jobs"))
    return batches


def main() -> None:
    global SERVER
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--bulk", type=int, default=300_000)
    parser.add_argument("--server", default=SERVER)
    args = parser.parse_args()
    SERVER = args.server
    name, url = scratch()
    try:
        upgrade(url)
        ledger = SqlLedger(make_engine(url, pool_size=2))
        t0 = time.perf_counter()
        batches = fill(ledger, args.jobs)
        print(f"filled {args.jobs} jobs in {time.perf_counter() - t0:.1f} s")
        acme_batch, last_batch = batches[("acme", 3)], batches[("acme", 9)]
        cases: dict[str, dict[str, object]] = {
            "tenant": {"tenant": "acme"},
            "tenant+status": {"tenant": "acme", "status": JobStatus.SUCCEEDED},
            "tenant+dead+reason": {"tenant": "acme", "status": JobStatus.DEAD,
                                   "reason": "not_an_image"},
            "tenant+batch": {"tenant": "acme", "batch_id": acme_batch},
            "tenant+batch+status": {"tenant": "acme", "batch_id": acme_batch,
                                    "status": JobStatus.QUEUED},
            "batch+queued (queued_pages)": {"batch_id": acme_batch,
                                            "status": JobStatus.QUEUED},
            "all+succeeded (embedded)": {"status": JobStatus.SUCCEEDED},
            "tenant+batch, its last batch, first page": {"tenant": "acme",
                                                          "batch_id": last_batch},
        }
        captured: list[tuple[str, Any]] = []

        def grab(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
            if "FROM jobs" in statement and "ORDER BY jobs.txid" in statement:
                captured.append((statement, params))

        for label, filters in cases.items():
            # a deep page: walk 20 pages of 100 first, then measure the next one
            after = None
            walked = 0
            for _ in range(0 if "first page" in label else 20):
                page = ledger.page_jobs(after=after, limit=100, **filters)  # type: ignore[arg-type]
                if page.next_cursor is None:
                    break  # a short listing: measure the last full page's successor
                after, walked = page.next_cursor, walked + 1
            times = []
            for _ in range(30):
                t = time.perf_counter()
                ledger.page_jobs(after=after, limit=100, **filters)  # type: ignore[arg-type]
                times.append((time.perf_counter() - t) * 1000)
            event.listen(ledger.engine, "before_cursor_execute", grab)
            ledger.page_jobs(after=after, limit=100, **filters)  # type: ignore[arg-type]
            event.remove(ledger.engine, "before_cursor_execute", grab)
            statement, params = captured[-1]
            raw = ledger.engine.raw_connection()
            try:
                cur = raw.cursor()
                cur.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + statement, params)
                plan = [r[0] for r in cur.fetchall()]
            finally:
                raw.close()
            where = f"page {walked + 1}"
            print(f"\n== {label} ({where}, limit 100): page_jobs median "
                  f"{statistics.median(times):.2f} ms, p90 "
                  f"{sorted(times)[int(len(times) * 0.9)]:.2f} ms")
            print("\n".join("   " + line for line in plan))
        ledger.close()
        bulk(args.bulk)
    finally:
        drop(name)


OLD = {"ix_jobs_batch_id_status": "(batch_id, status)",
       "ix_jobs_tenant_id_status_id": "(tenant_id, status, id)"}
NEW = ("ix_jobs_txid_id", "ix_jobs_tenant_id_txid_id", "ix_jobs_tenant_id_status_txid_id",
       "ix_jobs_batch_id_txid_id_status")


def bulk(n: int) -> None:
    """submit_many of n lines into an empty ledger: the 0005 indexes against the 0004 ones."""
    for layout in ("0004 indexes", "0005 indexes", "0004 indexes", "0005 indexes"):
        name, url = scratch()
        try:
            upgrade(url)
            engine = make_engine(url)
            if layout.startswith("0004"):
                with engine.begin() as conn:
                    for ix in NEW:
                        conn.execute(text(f"DROP INDEX {ix}"))
                    for ix, cols in OLD.items():
                        conn.execute(text(f"CREATE INDEX {ix} ON jobs {cols}"))
            ledger = SqlLedger(engine)
            batch = ledger.create_batch()
            t = time.perf_counter()
            ledger.submit_many((JobSpec("catalog", f"b/{k:08d}.jpg", options=OPTIONS)
                                for k in range(n)), batch_id=batch)
            dt = time.perf_counter() - t
            print(f"bulk {n:,} with {layout}: {dt:.2f} s = {n / dt:,.0f} jobs/s")
            ledger.close()
        finally:
            drop(name)


if __name__ == "__main__":
    main()
