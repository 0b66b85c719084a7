"""Orchestration overhead: jobs/s per worker process through ledger + Celery + Redis, against a
bare Celery no-op on the same broker, and the ratio of the two.

The model is the 64x64 colour-distance stand-in (``CLIPLINE_SEGMENTER=fake``), the images are
tiny PNGs in local folders (``CLIPLINE_OBJECT_STORE=folder``), so what is left is the cost of the
path itself: a Redis message, a ledger claim, a heartbeat thread, the small image work, a ledger
completion, the acknowledgement. The goal (DESIGN §6) is 500 jobs/s per worker process, and at
least half the rate of bare Celery with the same settings (issue 16).

    python -m bench.orchestration --jobs 5000 --processes 1 [--rounds 2] [--redis-db 12]

Real services: the machine's PostgreSQL (a throw-away database) and Redis (database 12 unless
``--redis-db`` says otherwise; flushed at the start, between runs and at the end). Each round
runs both, in alternating order (orchestration first in odd rounds, bare first in even ones), so
that whatever else loads the machine falls on both:

- **orchestration**: a real ``clipline worker`` process;
- **bare Celery**: a worker started as ``clipline worker`` starts Celery (the same
  ``workers.app.config``: acks_late, reject on worker lost, prefetch multiplier 1, JSON, the
  same broker, queues and worker options), whose ``clipline.process`` task does nothing but
  note the time: one ``pwrite`` to a file on tmpfs, a few microseconds. Its messages are
  published by the same ``CeleryQueue`` and carry the same arguments (a job id and a priority).

In both, the worker is started, answers a ping, and is then paused (SIGSTOP to its process
group) while the messages are published, and let go (SIGCONT) once they all wait in Redis: so
publishing neither competes with the worker for the CPUs nor caps its rate. The rate is jobs
divided by the time from the first task's start to the last task's end: for orchestration the
first claim and the last completion, read from the ledger's events; for bare Celery the times
its tasks noted. The acknowledgement of the last message falls outside both. The worker's CPU
time (its process group, from /proc) counts from the pause to the last task.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from celery import Celery
from sqlalchemy import func, select

from pipeline.adapters.ledger.schema import job_events, jobs
from pipeline.intake import queued_pages
from pipeline.jobs import Dispatch, JobSpec, JobStatus
from pipeline.settings import Settings
from tests.distkit import Cluster, cluster, wait_for
from tests.modelkit import TEST_MODEL
from tests.pictures import square
from workers.app import PROCESS, QUEUES, config, start_worker, worker_argv

REPO = Path(__file__).resolve().parents[1]
TIMES_DIR_ENV = "BENCH_BARE_TIMES_DIR"  # where the bare worker's processes note their times
PAGE = 1000  # messages published per producer acquisition, as queued_pages pages them
STOP_SECONDS = 30


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


SERVICES = (("postgres",), ("redis-server",))


def cpu_sample(group: int) -> list[float]:
    """CPU seconds so far of the worker's process group, PostgreSQL and Redis."""
    return [cpu_seconds(group), *(cpu_seconds(names=n) for n in SERVICES)]


# -- the bare Celery worker ------------------------------------------------------------------


class _Times:
    """In each worker process: the first task's start, the last task's end and the count, kept
    in a file of the process's own (opened after the fork, rewritten in place by each task)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pid = 0
        self.fd = -1
        self.first = 0.0
        self.count = 0

    def note(self, start: float) -> None:
        end = time.time()
        if self.pid != os.getpid():
            self.pid, self.first, self.count = os.getpid(), start, 0
            self.fd = os.open(self.folder / f"{self.pid}.times", os.O_WRONLY | os.O_CREAT, 0o644)
        self.count += 1
        os.pwrite(self.fd, f"{self.first:.6f} {end:.6f} {self.count:10d}\n".encode(), 0)


def read_times(folder: Path) -> tuple[float, float, int]:
    """Across the bare worker's processes: first start, last end, tasks run. A file caught
    half rewritten counts as none yet."""
    firsts, lasts, count = [], [], 0
    for path in folder.glob("*.times"):
        try:
            first, last, n = path.read_text().split()
            firsts.append(float(first))
            lasts.append(float(last))
            count += int(n)
        except (OSError, ValueError):
            continue
    return (min(firsts, default=0.0), max(lasts, default=0.0), count)


def bare_app(settings: Settings, times: _Times) -> Celery:
    """Celery with the real worker's configuration, whose ``clipline.process`` does nothing."""
    app = Celery("clipline-bare", set_as_current=True)
    app.conf.update(config(settings))

    @app.task(name=PROCESS, acks_late=True, reject_on_worker_lost=True,  # type: ignore[untyped-decorator]
              ignore_result=True)
    def process(job_id: str, priority: int = 0) -> str:
        times.note(time.time())
        return "done"

    return app


def bare_worker(argv: list[str]) -> int:
    """The bare worker's process: settings from the environment, as ``clipline worker``."""
    return start_worker(bare_app(Settings(), _Times(Path(os.environ[TIMES_DIR_ENV]))), argv)


# -- one run of each kind ---------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    kind: str
    jobs: int
    span: float  # first task start -> last task end, seconds
    cpu: list[float]  # worker, PostgreSQL, Redis: CPU seconds over the run
    publish_seconds: float

    @property
    def rate(self) -> float:
        return self.jobs / self.span


def _pause(c: Cluster, proc: subprocess.Popen[bytes]) -> list[float]:
    """Wait until the worker answers a ping, stop its process group; CPU so far."""
    def answers() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited before it answered a ping\n{c.logs()}")
        replies = c.queue.app.control.ping(timeout=0.5)
        if len(replies) > 1:  # it would take messages of ours, or we of its
            raise SystemExit(f"more than one worker answers on {c.redis_url}: {replies}; "
                             "give this benchmark a Redis database of its own (--redis-db)")
        return bool(replies)

    wait_for(answers, 60, "the worker to answer a ping", c.logs)
    os.killpg(proc.pid, signal.SIGSTOP)
    return cpu_sample(proc.pid)


def _stop(c: Cluster, proc: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (the last acknowledgement is sent), then an empty Redis database."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        c.kill(proc)
    c.redis.flushdb()


def run_orchestration(c: Cluster, src: Path, args: argparse.Namespace, round_: int) -> Run:
    worker = c.start("worker", f"--concurrency={args.processes}", f"--pool={args.pool}")
    before = _pause(c, worker)
    start = time.perf_counter()
    batch = c.ledger.create_batch(label="orchestration bench")
    # A key of each round's own: the same image again would fold into the earlier job.
    c.ledger.submit_many(
        (JobSpec(bucket=str(src), key=f"{i:07d}.png", model=TEST_MODEL,
                 idempotency_key=f"orchestration-bench-{round_}-{i}")
         for i in range(args.jobs)),
        batch_id=batch,
    )
    for page in queued_pages(c.ledger, batch, page=PAGE):
        c.queue.publish([Dispatch(j.id, j.priority) for j in page])
    published = time.perf_counter() - start
    os.killpg(worker.pid, signal.SIGCONT)
    c.wait_batch(batch, timeout=max(120, args.jobs / 50))
    cpu = cpu_sample(worker.pid)
    _stop(c, worker)
    counts = c.ledger.batch_counts(batch)
    if counts[JobStatus.SUCCEEDED] != args.jobs:
        raise SystemExit(f"not every job succeeded: {counts.by_status}\n{c.logs()}")
    with c.ledger.engine.connect() as conn:
        first, last = conn.execute(
            select(func.min(job_events.c.at), func.max(job_events.c.at))
            .join(jobs, jobs.c.id == job_events.c.job_id).where(jobs.c.batch_id == batch)
        ).one()
    return Run("orchestration", args.jobs, (last - first).total_seconds(),
               [a - b for a, b in zip(cpu, before, strict=True)], published)


def run_bare(c: Cluster, work: Path, args: argparse.Namespace, round_: int) -> Run:
    times = work / f"bare-times-{round_}"
    times.mkdir()
    log = work / f"bare-worker-{round_}.log"
    code = ("import sys; from bench.orchestration import bare_worker; "
            "sys.exit(bare_worker(sys.argv[1:]))")
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-c", code,
             *worker_argv(c.settings, args.processes, ",".join(QUEUES), args.pool, "bench-bare")],
            cwd=REPO, env={**c.env, TIMES_DIR_ENV: str(times)}, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    c.processes.append((worker, log))  # killed with the cluster, and its log in c.logs()
    before = _pause(c, worker)
    start = time.perf_counter()
    ids = [uuid.uuid4() for _ in range(args.jobs)]
    for i in range(0, args.jobs, PAGE):
        c.queue.publish([Dispatch(j, 0) for j in ids[i:i + PAGE]])
    published = time.perf_counter() - start
    os.killpg(worker.pid, signal.SIGCONT)
    wait_for(lambda: read_times(times)[2] >= args.jobs, max(120, args.jobs / 50),
             "the bare worker to run every task", c.logs)
    cpu = cpu_sample(worker.pid)
    _stop(c, worker)
    first, last, count = read_times(times)
    if count != args.jobs:
        raise SystemExit(f"the bare worker ran {count} tasks for {args.jobs} messages")
    return Run("bare Celery", args.jobs, last - first,
               [a - b for a, b in zip(cpu, before, strict=True)], published)


# -- the report -------------------------------------------------------------------------------


def total(runs: list[Run], kind: str) -> Run:
    mine = [r for r in runs if r.kind == kind]
    return Run(kind, sum(r.jobs for r in mine), sum(r.span for r in mine),
               [sum(x) for x in zip(*(r.cpu for r in mine), strict=True)],
               sum(r.publish_seconds for r in mine))


def report(runs: list[Run], args: argparse.Namespace, load_before: float) -> None:
    p = args.processes
    print(f"machine: {os.cpu_count()} CPUs, load {load_before:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end")
    print(f"jobs: {args.jobs} a run ({args.image_size}x{args.image_size} PNG), succeeded "
          f"{args.jobs}, worker processes: {p} ({args.pool} pool), "
          f"worker log level {args.log_level}, rounds: {args.rounds}")
    for i, r in enumerate(runs):
        print(f"  round {i // 2 + 1} {r.kind:<13} {r.span:7.2f} s = {r.rate:8,.0f} jobs/s; "
              f"published at {r.jobs / r.publish_seconds:,.0f} msg/s; worker CPU per job "
              f"{r.cpu[0] * 1000 / r.jobs:.3f} ms")
    orch, bare = total(runs, "orchestration"), total(runs, "bare Celery")
    print(f"first claim -> last completion: {orch.span:.2f} s = {orch.rate:,.0f} jobs/s = "
          f"{orch.rate / p:,.0f} jobs/s per worker process")
    print(f"bare Celery no-op, first task -> last task: {bare.span:.2f} s = {bare.rate:,.0f} "
          f"jobs/s = {bare.rate / p:,.0f} jobs/s per worker process")
    ratio = orch.rate / bare.rate
    print(f"ratio orchestration / bare Celery: {ratio:.2f} (the same {p} worker process(es) "
          f"on both sides, so per worker process too); goal >= 0.5: "
          f"{'met' if ratio >= 0.5 else 'NOT met'}")
    for run in (orch, bare):
        per_job = [x * 1000 / run.jobs for x in run.cpu]
        print(f"CPU per job, {run.kind}: worker {per_job[0]:.3f} ms, PostgreSQL "
              f"{per_job[1]:.3f} ms, Redis {per_job[2]:.3f} ms")
    print("(the PostgreSQL and Redis figures include whatever else used them meanwhile, and "
          "miss the processes that ended meanwhile: a busy machine can make them negative)")
    worker_ms = orch.cpu[0] * 1000 / orch.jobs
    if worker_ms > 0:  # /proc counts clock ticks: a handful of jobs may not reach one
        print(f"=> one orchestration worker process with a core to itself: about "
              f"{1000 / worker_ms:,.0f} jobs/s")
    if not math.isfinite(ratio) or ratio <= 0:
        raise SystemExit(f"no usable ratio: {ratio}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000,
                        help="jobs (messages) in each run of each kind")
    parser.add_argument("--processes", type=int, default=1,
                        help="worker pool processes, for both workers")
    parser.add_argument("--pool", default="prefork",
                        help="Celery pool of both workers: prefork, threads (then --processes "
                             "is threads in one process) or solo")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of one orchestration run and one bare Celery run, in "
                             "alternating order; the figures sum the rounds")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--log-level", default="WARNING",
                        help="worker log level, for both workers (INFO writes two lines per "
                             "job)")
    parser.add_argument("--redis-db", type=int, default=12,
                        help="Redis database number, flushed at the start, between runs and "
                             "at the end")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.processes < 1 or args.rounds < 1:
        parser.error("--jobs, --processes and --rounds must be at least 1")
    return args


def main() -> None:
    args = parse()
    # A SIGTERM (`timeout`, say) unwinds like Ctrl-C, so the workers and the database go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_before = os.getloadavg()[0]
    with tiny_stack("clipline-orch-", args.jobs, args.image_size, args.redis_db,
                    args.log_level) as (c, work, src):
        runs: list[Run] = []
        for round_ in range(1, args.rounds + 1):
            bare_first = round_ % 2 == 0
            for bare in (bare_first, not bare_first):
                runs.append(run_bare(c, work, args, round_) if bare
                            else run_orchestration(c, src, args, round_))
    report(runs, args, load_before)


@contextmanager
def tiny_stack(prefix: str, jobs: int, image_size: int, redis_db: int,
               log_level: str) -> Iterator[tuple[Cluster, Path, Path]]:
    """The stack this benchmark and ``bench.soak`` measure, model and storage made cheap:
    ``jobs`` PNGs of ``image_size`` px in a folder, the 64x64 stand-in model
    (``SEGMENTER=fake``), outputs to a folder, a cluster on Redis database ``redis_db``.
    Yields (cluster, work folder, source folder); all of it is gone on exit."""
    # Files on tmpfs where there is one: creating a file on this VM's disk costs about 1 ms,
    # which would measure the disk, not the orchestration.
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix=prefix, dir=shm) as tmp:
        work = Path(tmp)
        src, out = work / "in", work / "out"
        src.mkdir()
        for i in range(jobs):
            (src / f"{i:07d}.png").write_bytes(tiny_png(image_size, i % 200))
        with cluster(work, None, redis_db=redis_db, OBJECT_STORE="folder", SEGMENTER="fake",
                     S3_OUTPUT_BUCKET=str(out), LOG_LEVEL=log_level,
                     LEASE_SECONDS="60", HEARTBEAT_SECONDS="20",
                     CELERY_EVENTS="false") as c:
            yield c, work, src


if __name__ == "__main__":
    main()
