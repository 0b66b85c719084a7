"""Orchestration overhead: jobs/s per worker process through ledger + Celery + Redis.

The model is the 64x64 colour-distance stand-in (``CLIPLINE_SEGMENTER=fake``), the images are
tiny PNGs in local folders (``CLIPLINE_OBJECT_STORE=folder``), so what is left is the cost of the
path itself: a Redis message, a ledger claim, a heartbeat thread, the small image work, a ledger
completion, the acknowledgement. The goal (DESIGN §6) is 500 jobs/s per worker process.

    python -m bench.orchestration --jobs 5000 --processes 1 [--redis-db 12]

Real services: the machine's PostgreSQL (a throw-away database) and Redis (database 12 unless
``--redis-db`` says otherwise; flushed at the start and the end), and a real ``clipline worker``
process. The rate is jobs divided by the time from the first claim to
the last completion, both read from the ledger's events.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from pipeline.adapters.ledger.schema import job_events
from pipeline.intake import queued_pages
from pipeline.jobs import Dispatch, JobSpec, JobStatus
from tests.distkit import cluster
from tests.modelkit import TEST_MODEL
from tests.pictures import square


def tiny_png(size: int, shade: int) -> bytes:
    return square((size, size), (size // 4, size // 4, 3 * size // 4, 3 * size // 4),
                  (shade, 40, 40), ground=(250, 250, 250))


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(group: int | None = None, names: tuple[str, ...] = ()) -> float:
    """CPU time (user + system) of the live processes in process group ``group`` or with one
    of these command ``names``, from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        if (group is not None and int(fields[2]) == group) or name in names:
            total += int(fields[11]) + int(fields[12])
    return total / TICK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--processes", type=int, default=1, help="worker pool processes")
    parser.add_argument("--pool", default="prefork", help="Celery pool (prefork, solo)")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--log-level", default="WARNING",
                        help="worker log level (INFO writes two lines per job)")
    parser.add_argument("--redis-db", type=int, default=12,
                        help="Redis database number, flushed at the start and the end")
    args = parser.parse_args()

    # Files on tmpfs where there is one: creating a file on this VM's disk costs about 1 ms,
    # which would measure the disk, not the orchestration.
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="clipline-orch-", dir=shm) as tmp:
        work = Path(tmp)
        src, out = work / "in", work / "out"
        src.mkdir()
        for i in range(args.jobs):
            (src / f"{i:07d}.png").write_bytes(tiny_png(args.image_size, i % 200))
        with cluster(work, None, redis_db=args.redis_db, OBJECT_STORE="folder", SEGMENTER="fake",
                     S3_OUTPUT_BUCKET=str(out), LOG_LEVEL=args.log_level,
                     LEASE_SECONDS="60", HEARTBEAT_SECONDS="20",
                     CELERY_EVENTS="false") as c:
            worker = c.start_worker(concurrency=args.processes, pool=args.pool)
            services = ("postgres", "redis-server")
            cpu_before = [cpu_seconds(worker.pid), cpu_seconds(names=services[:1]),
                          cpu_seconds(names=services[1:])]
            start = time.perf_counter()
            batch = c.ledger.create_batch(label="orchestration bench")
            c.ledger.submit_many(
                (JobSpec(bucket=str(src), key=f"{i:07d}.png", model=TEST_MODEL)
                 for i in range(args.jobs)),
                batch_id=batch,
            )
            recorded = time.perf_counter()
            for page in queued_pages(c.ledger, batch):
                c.queue.publish([Dispatch(j.id, j.priority) for j in page])
            published = time.perf_counter()
            c.wait_batch(batch, timeout=max(120, args.jobs / 50))
            cpu = [cpu_seconds(worker.pid), cpu_seconds(names=services[:1]),
                   cpu_seconds(names=services[1:])]
            counts = c.ledger.batch_counts(batch)
            if counts[JobStatus.SUCCEEDED] != args.jobs:
                raise SystemExit(f"not every job succeeded: {counts.by_status}\n{c.logs()}")
            with c.ledger.engine.connect() as conn:
                first, last = conn.execute(
                    select(func.min(job_events.c.at), func.max(job_events.c.at))
                ).one()
        span = (last - first).total_seconds()
        rate = args.jobs / span
        print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at the end")
        print(f"jobs: {args.jobs} ({args.image_size}x{args.image_size} PNG), succeeded "
              f"{counts[JobStatus.SUCCEEDED]}, worker processes: {args.processes} "
              f"({args.pool} pool), "
              f"worker log level {args.log_level}")
        print(f"recorded in the ledger: {recorded - start:.2f} s; published: "
              f"{args.jobs / (published - recorded):,.0f} msg/s")
        print(f"first claim -> last completion: {span:.2f} s = {rate:,.0f} jobs/s = "
              f"{rate / args.processes:,.0f} jobs/s per worker process")
        per_job = [(a - b) * 1000 / args.jobs for a, b in zip(cpu, cpu_before, strict=True)]
        print(f"CPU per job: worker {per_job[0]:.2f} ms, PostgreSQL {per_job[1]:.2f} ms, "
              f"Redis {per_job[2]:.2f} ms (the PostgreSQL and Redis figures include whatever "
              "else used them meanwhile)")
        if per_job[0] > 0:  # /proc counts clock ticks: a handful of jobs may not reach one
            print(f"=> one worker process with a core to itself: about "
                  f"{1000 / per_job[0]:,.0f} jobs/s")


if __name__ == "__main__":
    main()
