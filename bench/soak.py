"""Memory soak: N jobs through one worker process, and its resident size after every wave.

    python -m bench.soak --jobs 10000 [--every 1000] [--redis-db 12]

The stack is bench.orchestration's: the machine's PostgreSQL (a throw-away database), Redis
(database 12 unless ``--redis-db`` says otherwise, as bench.orchestration's: do not run both at
once; flushed at the start and the end), one real ``clipline worker`` with one pool process, the
64x64 colour-distance stand-in model (``CLIPLINE_SEGMENTER=fake``) and tiny PNGs in local
folders (``CLIPLINE_OBJECT_STORE=folder``).

The jobs go in waves of ``--every``: a wave is recorded, published and waited for, then the
resident size (RSS) of the pool process that ran it, and of the worker's main process, is read
while the worker is idle. The first wave is the warm-up (imports, connection pools, caches); the
drift is the change from its end to the end of the last wave, in %. The goal is under 5%. The
pool process must be the same one throughout: a replaced one (``--max-memory-per-child``) would
hide a leak, so the run fails if it changes.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import redis

from bench.orchestration import tiny_stack
from pipeline.intake import queued_pages
from pipeline.jobs import Dispatch, JobSpec, JobStatus
from tests.distkit import Cluster
from tests.modelkit import TEST_MODEL

try:  # psutil where installed; /proc otherwise (Linux)
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid``."""
    if psutil is not None:
        return int(psutil.Process(pid).memory_info().rss)
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # kB
    raise RuntimeError(f"no VmRSS for process {pid}")


def children(pid: int) -> list[int]:
    """The direct children of process ``pid`` (a prefork worker's pool processes)."""
    if psutil is not None:
        return [p.pid for p in psutil.Process(pid).children()]
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        if int(text[text.rindex(")") + 2:].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def pool_process(main: int, timeout: float = 30) -> int:
    """The one pool process of a ``--concurrency=1`` prefork worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(main)
        if len(kids) == 1:
            return kids[0]
        time.sleep(0.1)
    raise SystemExit(f"the worker {main} has {len(children(main))} pool processes, not 1")


def run_wave(c: Cluster, src: Path, first: int, count: int, timeout: float) -> None:
    """Record, publish and wait for jobs ``first`` .. ``first + count - 1``; all must succeed."""
    batch = c.ledger.create_batch(label=f"soak {first}")
    c.ledger.submit_many(
        (JobSpec(bucket=str(src), key=f"{i:07d}.png", model=TEST_MODEL)
         for i in range(first, first + count)),
        batch_id=batch,
    )
    for page in queued_pages(c.ledger, batch):
        c.queue.publish([Dispatch(j.id, j.priority) for j in page])
    counts = c.wait_batch(batch, timeout=timeout)
    if counts[JobStatus.SUCCEEDED] != count:
        raise SystemExit(f"not every job of wave {first} succeeded: {counts.by_status}\n"
                         f"{c.logs()}")


def refuse_a_busy_database(redis_db: int) -> None:
    """Stop before flushing a Redis database that something else is connected to: a leftover
    worker there would take this run's messages, and the waves would wait for nothing."""
    clients = redis.Redis(host="127.0.0.1").client_list()
    others = [c for c in clients if int(c.get("db", -1)) == redis_db]
    if others:
        raise SystemExit(f"Redis database {redis_db} has {len(others)} other client(s) (first: "
                         f"{others[0].get('addr')} {others[0].get('cmd')}): "
                         "pick a free one with --redis-db")


def mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def drift(before: int, after: int) -> str:
    return f"{(after - before) * 100 / before:+.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs in all (default 10,000)")
    parser.add_argument("--every", type=int, default=1000,
                        help="jobs per wave; the RSS is read after each, the first is the "
                             "warm-up (default 1,000)")
    parser.add_argument("--image-size", type=int, default=32,
                        help="side of the PNG each job reads, in px (default 32)")
    parser.add_argument("--redis-db", type=int, default=12,
                        help="Redis database number, flushed at the start and the end "
                             "(default 12)")
    args = parser.parse_args()
    if args.every < 1 or args.image_size < 1:
        parser.error("--every and --image-size must be at least 1")
    if args.jobs < 2 * args.every:
        parser.error("--jobs must be at least two waves (--every), a warm-up and one more")

    refuse_a_busy_database(args.redis_db)
    with tiny_stack("clipline-soak-", args.jobs, args.image_size, args.redis_db,
                    "WARNING") as (c, _, src):
        worker = c.start_worker(concurrency=1, pool="prefork")
        pool = pool_process(worker.pid)
        print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at the start; "
              f"RSS via {'psutil' if psutil is not None else '/proc/PID/status VmRSS'}")
        samples = [(0, rss_bytes(pool), rss_bytes(worker.pid))]
        print(f"jobs {0:>7,}: pool process {mib(samples[0][1])}, "
              f"main process {mib(samples[0][2])} (idle, before any job)")
        start = time.perf_counter()
        for first in range(0, args.jobs, args.every):
            count = min(args.every, args.jobs - first)
            run_wave(c, src, first, count, timeout=max(120, count / 20))
            if pool_process(worker.pid) != pool:
                raise SystemExit("the pool process was replaced: its RSS says nothing now")
            samples.append((first + count, rss_bytes(pool), rss_bytes(worker.pid)))
            done, pool_rss, main_rss = samples[-1]
            print(f"jobs {done:>7,}: pool process {mib(pool_rss)}, "
                  f"main process {mib(main_rss)}")
        elapsed = time.perf_counter() - start
    warm, end = samples[1], samples[-1]
    print(f"{args.jobs:,} jobs in {elapsed:.1f} s = {args.jobs / elapsed:,.0f} jobs/s "
          f"(waves of {args.every:,}), one pool process throughout (pid {pool})")
    print(f"drift after warm-up ({warm[0]:,} -> {end[0]:,} jobs): pool process "
          f"{drift(warm[1], end[1])} ({mib(warm[1])} -> {mib(end[1])}), main process "
          f"{drift(warm[2], end[2])} (goal < 5%)")
    print(f"from the start (0 -> {end[0]:,} jobs): pool process {drift(samples[0][1], end[1])}, "
          f"main process {drift(samples[0][2], end[2])}")


if __name__ == "__main__":
    main()
