"""One job's path through a worker, part by part, in this process: what each part costs.

    python -m bench.job_path --jobs 2000 [--redis-db 12]

``bench.orchestration`` says how fast a real worker runs jobs against bare Celery; this says
where the time of each job goes, without Celery, so the parts can be weighed against each other
and against their floors. The stack is ``bench.orchestration``'s (the machine's PostgreSQL in a
throw-away database, the 64x64 stand-in model, 32x32 PNGs in folders on tmpfs), and every part
runs on its own set of fresh jobs, one after another:

- **whole**: ``JobRunner.run`` (claim, heartbeat registration, the image work, complete,
  metrics, logging at WARNING);
- **image work**: ``process_job`` alone (read, decode, model, compose, encode, write);
- **claim** and **complete**: ``SqlLedger.claim`` / ``SqlLedger.complete``, and the very same
  compiled statements sent through the raw psycopg connection (autocommit, psycopg's prepared
  statements), which is the floor for one round trip of that SQL: the ratio of the two is what
  SQLAlchemy, the row mapping and the ledger's bookkeeping add;
- **heartbeat registration** (``Heartbeats.holding`` in and out) and **metrics**
  (``metrics.job_finished``).

CPU is this process's (``time.process_time``); wall includes waiting on PostgreSQL. What the
whole costs beyond the sum of its parts ("rest") is the runner's own code (breakers, log
context, the in-place retry wrapper) and the parts costing more interleaved, one job after
another, than each in a tight loop of its own (cold caches): a cProfile of ``JobRunner.run``
shows no single function behind it. Celery's share
(message, acknowledgement) is not here: ``bench.orchestration``'s bare Celery run measures it.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb

from bench.orchestration import tiny_stack
from pipeline import bootstrap, logs, metrics
from pipeline.adapters.ledger.sql import SqlLedger
from pipeline.adapters.ledger.statements import Statements
from pipeline.adapters.queue.memory import MemoryQueue
from pipeline.heartbeat import Heartbeats
from pipeline.jobs import JobSpec
from pipeline.process import process_job
from tests.modelkit import TEST_MODEL

RESULT = {"timings_ms": {"fetch": 0.2, "decode": 0.6, "infer": 0.3, "compose": 0.2,
                         "encode": 0.1, "put": 0.4}}


@dataclass(frozen=True)
class Part:
    name: str
    cpu_ms: float
    wall_ms: float


def timed(name: str, items: Sequence[Any], step: Callable[[Any], object]) -> Part:
    """Run ``step`` on each item; CPU and wall milliseconds per item."""
    cpu, wall = time.process_time(), time.perf_counter()
    for item in items:
        step(item)
    n = len(items)
    return Part(name, (time.process_time() - cpu) * 1000 / n,
                (time.perf_counter() - wall) * 1000 / n)


class RawStatements:
    """The ledger's claim and complete, compiled once, sent through the raw psycopg connection."""

    def __init__(self, ledger: SqlLedger) -> None:
        statements = Statements(pg=True)
        dialect = ledger.engine.dialect
        self._conn = ledger.engine.raw_connection()
        self._cursor = self._conn.driver_connection.cursor()  # type: ignore[union-attr]
        self._conn.driver_connection.autocommit = True  # type: ignore[union-attr]
        self._sql = {}
        for name, move in (("claim", statements.claim), ("complete", statements.complete)):
            compiled = move.statement.compile(dialect=dialect)
            constants = {k: v for k, v in compiled.params.items() if not k.startswith("p_")}
            self._sql[name] = (str(compiled), constants)
        self.tokens: dict[uuid.UUID, uuid.UUID] = {}

    def _run(self, name: str, params: dict[str, Any]) -> None:
        sql, constants = self._sql[name]
        if not self._cursor.execute(sql, {**constants, **params}, prepare=True).fetchall():
            raise SystemExit(f"raw {name} changed no row")

    def claim(self, job_id: uuid.UUID, now: Any) -> None:
        token = self.tokens[job_id] = uuid.uuid4()
        self._run("claim", {"p_job_id": job_id, "p_now": now, "p_worker": "bench:raw",
                            "p_expires": now + timedelta(seconds=60), "p_new_token": token})

    def complete(self, job_id: uuid.UUID, now: Any) -> None:
        self._run("complete", {"p_job_id": job_id, "p_token": self.tokens[job_id],
                               "p_now": now, "p_result": Jsonb(RESULT)})

    def close(self) -> None:
        self._conn.close()


def measure(args: argparse.Namespace) -> list[Part]:
    sets = 5  # whole, image work, ledger, raw statements, heartbeat
    with tiny_stack("clipline-job-path-", args.jobs * sets, 32, args.redis_db,
                    "WARNING") as (c, _, src):
        ledger = c.ledger
        ids = [r.job.id for r in (
            ledger.submit(JobSpec(bucket=str(src), key=f"{i:07d}.png", model=TEST_MODEL))
            for i in range(args.jobs * sets))]
        whole, image, mine, raw, beat = (ids[i::sets] for i in range(sets))
        runner = bootstrap.job_runner(c.settings, MemoryQueue(), worker="bench:job-path",
                                      segmenter_threads=1)
        cfg = runner.config
        runner.run(whole[0])  # warm-up: the model, the pools, the statement caches
        parts = [timed("whole (JobRunner.run)", whole[1:], runner.run)]
        jobs = [ledger.get(i) for i in image]
        parts.append(timed("image work (process_job)", jobs, lambda job: process_job(
            job, runner.store, runner.segmenters, output_bucket=cfg.output_bucket,
            limits=cfg.limits, prefix=cfg.output_prefix)))
        claims: dict[uuid.UUID, Any] = {}
        parts.append(timed("claim (SqlLedger)", mine, lambda i: claims.__setitem__(
            i, ledger.claim(i, worker="bench:ledger"))))
        parts.append(timed("complete (SqlLedger)", mine,
                           lambda i: ledger.complete(i, claims[i].token, RESULT)))
        statements = RawStatements(ledger)
        try:
            now = ledger.clock.now()
            parts.append(timed("claim (raw psycopg)", raw, lambda i: statements.claim(i, now)))
            parts.append(timed("complete (raw psycopg)", raw,
                               lambda i: statements.complete(i, now)))
        finally:
            statements.close()
        beats = Heartbeats(ledger, interval=3600)
        token = uuid.uuid4()

        def register(job_id: uuid.UUID) -> None:
            with beats.holding(job_id, token):
                pass

        parts.append(timed("heartbeat registration", beat, register))
        parts.append(timed("metrics (job_finished)", beat,
                           lambda _: metrics.job_finished("succeeded", None,
                                                          RESULT["timings_ms"])))
        runner.ledger.close()  # type: ignore[attr-defined]
    return parts


def report(parts: list[Part], jobs: int) -> None:
    by = {p.name: p for p in parts}
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {jobs} jobs per part "
          "(32x32 PNG, stand-in model, folders on tmpfs, PostgreSQL)")
    print(f"  {'part':<28} {'CPU ms/job':>10} {'wall ms/job':>11}")
    for p in parts:
        print(f"  {p.name:<28} {p.cpu_ms:10.3f} {p.wall_ms:11.3f}")
    whole = by["whole (JobRunner.run)"]
    named = [by[n] for n in ("image work (process_job)", "claim (SqlLedger)",
                             "complete (SqlLedger)", "heartbeat registration",
                             "metrics (job_finished)")]
    rest_cpu = whole.cpu_ms - sum(p.cpu_ms for p in named)
    rest_wall = whole.wall_ms - sum(p.wall_ms for p in named)
    print(f"  {'rest (whole - parts)':<28} {rest_cpu:10.3f} {rest_wall:11.3f}")
    for verb in ("claim", "complete"):
        mine, raw = by[f"{verb} (SqlLedger)"], by[f"{verb} (raw psycopg)"]
        print(f"ratio {verb}, SqlLedger / raw psycopg: CPU {mine.cpu_ms / raw.cpu_ms:.2f}, "
              f"wall {mine.wall_ms / raw.wall_ms:.2f}")
    ledger = sum(by[f"{v} (SqlLedger)"].wall_ms for v in ("claim", "complete"))
    print(f"share of the whole's wall time: ledger {ledger / whole.wall_ms:.0%}, image work "
          f"{by['image work (process_job)'].wall_ms / whole.wall_ms:.0%}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     epilog="Run it from the repository's root (it imports bench "
                                            "and tests): python -m bench.job_path")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs timed in each part")
    parser.add_argument("--redis-db", type=int, default=12,
                        help="Redis database number for the stack: flushed at the start and the "
                             "end (nothing is published)")
    args = parser.parse_args(argv)
    if args.jobs < 2:
        parser.error("--jobs must be at least 2")
    logs.configure(level="WARNING")  # as bench.orchestration's worker logs: no line per job
    report(measure(args), args.jobs)


if __name__ == "__main__":
    main()
