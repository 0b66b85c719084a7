"""Ledger benchmark on PostgreSQL: bulk submission, then claim→complete with K workers.

    python bench/ledger.py [--jobs 1000000] [--workers 2 4] [--claim-batch 1 10] [--work-jobs 20000]

Creates a scratch database (dropped at the end) on the server given by --server, migrates it,
and prints jobs/s for each phase. Figures go to docs/PERFORMANCE.md with the machine they came from.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import time
import uuid

from sqlalchemy import create_engine, text

from pipeline.adapters.ledger.database import make_engine, upgrade
from pipeline.adapters.ledger.sql import SqlLedger
from pipeline.jobs import JobSpec

OPTIONS = {"format": "png", "channels": "rgba"}


def manifest(n: int, prefix: str) -> object:
    # One options object shared by every line, as a parsed manifest with defaults gives.
    return (JobSpec("catalog", f"{prefix}/{i:08d}.jpg", options=OPTIONS) for i in range(n))


def bench_bulk(url: str, n: int) -> float:
    ledger = SqlLedger(make_engine(url))
    batch = ledger.create_batch(label="bench")
    t0 = time.perf_counter()
    result = ledger.submit_many(manifest(n, "bulk"), batch_id=batch)
    elapsed = time.perf_counter() - t0
    assert result.inserted == n, result
    # The same manifest again: every line is a duplicate of a stored job.
    t1 = time.perf_counter()
    again = ledger.submit_many(manifest(min(n, 100_000), "bulk"), batch_id=batch)
    dup_elapsed = time.perf_counter() - t1
    assert again.inserted == 0
    print(f"bulk submit:      {n:>9,} jobs in {elapsed:6.2f} s = {n / elapsed:>9,.0f} jobs/s")
    print(f"  resubmit (dups): {again.received:>8,} lines in {dup_elapsed:6.2f} s = "
          f"{again.received / dup_elapsed:>9,.0f} lines/s, 0 inserted")
    ledger.close()
    return n / elapsed


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
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("TRUNCATE job_events, jobs"))
        conn.execute(text("VACUUM ANALYZE jobs"))
    engine.dispose()
    ledger = SqlLedger(make_engine(url))
    ledger.submit_many(manifest(n, f"work-{uuid.uuid4().hex[:6]}"))
    ledger.close()
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start = time.time() + 2.0  # let every process import and connect first
    procs = [ctx.Process(target=_worker, args=(url, claim_batch, start, out))
             for _ in range(workers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    total = sum(r[0] for r in results)
    elapsed = max(r[1] for r in results) - start
    assert total == n, (total, n)
    rate = total / elapsed
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
        for workers in args.workers:
            for batch in args.claim_batch:
                bench_claim_complete(url, args.work_jobs, workers, batch)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
