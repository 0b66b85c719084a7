"""Chaos: outages cost time, never jobs (issue 12). Faults injected into a running deployment.

    python -m bench.chaos [--jobs 1000] [--images 200] [--workers 2] [--kill-every 5]
                          [--triton-outage 300] [--deadline 1800] [--seed 1]

Everything runs on services of the run's own, on free ports (bench/chaos_stack.py): Redis, a
PostgreSQL cluster made with ``initdb``, moto's S3 server and ``clipline triton serve``. The run
migrates the ledger (``clipline db upgrade``), uploads generated JPEGs (bench/chaos_corpus.py:
1 in 100 truncated, 1 in 100 not an image, 1 in 100 never uploaded; each image with up to six
output options, one job each), starts ``--workers`` ``clipline worker`` processes
(``--concurrency`` 2, a metrics port each) and one ``clipline reconcile``, and submits the jobs
with ``clipline submit --manifest``. Then the faults, timed from the submit:

- every ``--kill-every`` seconds, SIGKILL to one worker process drawn at random (a main process
  or a pool child; ``--kill pool``: pool children only); a main found dead is restarted at
  once, after its orphaned pool is killed, as a container's processes die with it (a start that
  the worker's own checks refuse, say while Triton is down, is counted and tried again after
  1, 2, 4 … 30 s, as Kubernetes backs off a crashing container);
- FLUSHALL on Redis at ``--flush-at``;
- ``pg_ctl restart -m fast`` at ``--pg-restart-at``;
- Triton stopped at ``--triton-down-at`` and started again, on the same ports,
  ``--triton-outage`` seconds later.

Every second the broker's messages (the ``interactive`` and ``bulk`` lists, with kombu's
priority lists, plus the ``unacked`` hash) are sampled against the ledger's pending jobs
(queued + running). When every job is terminal, or at ``--deadline``, the run prints what the
ledger, ``job_events`` and the output bucket say, and whether the goal was met. The fault
schedule (times, and which worker and role each kill draws) follows ``--seed``; the timing of
the processes does not. Every process and the run's folder are removed at the end, Ctrl-C too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from bench.chaos_corpus import VARIANTS, corpus
from bench.chaos_report import Sampler, report
from bench.chaos_stack import CLIPLINE, Postgres, Stack, Triton, children, free_port, kill_tree

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / ".cache" / "models"
CLOCKS = {"RECONCILE_INTERVAL_SECONDS": "2", "LEASE_SECONDS": "10", "HEARTBEAT_SECONDS": "3",
          "RECONCILE_LOST_AFTER_SECONDS": "15"}
OUTPUT_BUCKET, SOURCE_BUCKET = "cutouts", "photos"
BACKOFF_MAX_SECONDS = 30.0  # between starts of a process that keeps exiting on its own
BACKOFF_RESET_SECONDS = 30.0  # up this long: the next exit starts the back-off afresh


class HelpFormatter(argparse.RawDescriptionHelpFormatter,
                    argparse.ArgumentDefaultsHelpFormatter):
    """The module's text as written, and every option's default."""


class Fleet:
    """The worker processes and the reconciler; a main found dead is started again."""

    def __init__(self, stack: Stack, env: dict[str, str], workers: int, concurrency: int,
                 say: Any) -> None:
        self.stack, self.env, self.say = stack, env, say
        self.names = [f"worker-{i + 1}" for i in range(workers)] + ["reconcile"]
        self.concurrency = concurrency
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts = dict.fromkeys(self.names, 0)
        self.exits: dict[str, int] = dict.fromkeys(self.names, 0)  # not by our SIGKILL
        self.said: dict[str, str] = {}  # the last exit shown, per process: repeats are counted
        self.started: dict[str, float] = {}
        self.refused = dict.fromkeys(self.names, 0)  # exits on their own in a row
        self.due: dict[str, float] = {}  # dead, to be started again at this time.monotonic()

    def start(self, name: str) -> None:
        self.starts[name] += 1
        if name == "reconcile":
            env = {**self.env, "CLIPLINE_RECONCILE_METRICS_PORT": str(free_port())}
            argv = [CLIPLINE, "reconcile"]
        else:  # a metrics port each (two on the default would clash) and a metrics folder each
            metrics = self.stack.root / "metrics" / f"{name}-{self.starts[name]}"
            metrics.mkdir(parents=True)
            env = {**self.env, "CLIPLINE_WORKER_METRICS_PORT": str(free_port()),
                   "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
            argv = [CLIPLINE, "worker", f"--concurrency={self.concurrency}"]
        self.procs[name] = self.stack.spawn(argv, f"{name}.log", env)
        self.started[name] = time.monotonic()

    def revive(self) -> None:
        """Start again each process found dead: at once after our SIGKILL; after 1, 2, 4 … 30 s
        when it exited on its own (a refused start), as Kubernetes backs off a crashing pod."""
        now = time.monotonic()
        for name, proc in self.procs.items():
            if name in self.due:
                if now >= self.due[name]:
                    del self.due[name]
                    self.start(name)
                continue
            if proc.poll() is None:
                if now - self.started[name] >= BACKOFF_RESET_SECONDS:
                    self.refused[name] = 0
                continue
            delay = 0.0
            if proc.returncode != -signal.SIGKILL:
                self.exits[name] += 1
                self.refused[name] += 1
                delay = min(2.0 ** (self.refused[name] - 1), BACKOFF_MAX_SECONDS)
                line = f"exited with {proc.returncode}: {self.last_line(name)}"
                if self.said.get(name) != line:
                    self.say(f"{name} {line} (started again until it stays up)")
                self.said[name] = line
            kill_tree(proc)  # its orphaned pool, as a container's processes die with it
            self.stack.processes.remove(proc)
            self.due[name] = now + delay

    def victims(self, mains: bool) -> list[tuple[str, str, int]]:
        """(worker, role, pid) of every live worker process, in a stable order."""
        found = []
        for name in self.names[:-1]:
            proc = self.procs[name]
            if name not in self.due and proc.poll() is None:
                found += [(name, "main", proc.pid)] if mains else []
                found += [(name, "pool child", pid) for pid in children(proc.pid)]
        return found

    def last_line(self, name: str) -> str:
        lines = (self.stack.logs / f"{name}.log").read_text(errors="replace").splitlines()
        return (lines[-1] if lines else "(no output)")[:200]

    def ready(self, name: str) -> bool:
        text = (self.stack.logs / f"{name}.log").read_text(errors="replace")
        if self.procs[name].poll() is not None:
            raise RuntimeError(f"{name} exited at start: {self.last_line(name)}")
        return " ready." in text if name != "reconcile" else "reconciler_started" in text


def options() -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("--jobs", type=int, default=1000, help="jobs submitted")
    p.add_argument("--images", type=int, default=200,
                   help=f"images generated; jobs may be at most {len(VARIANTS)} x this")
    p.add_argument("--workers", type=int, default=2, help="`clipline worker` processes")
    p.add_argument("--concurrency", type=int, default=2, help="pool processes per worker")
    p.add_argument("--kill-every", type=float, default=5.0,
                   help="SIGKILL a random worker process this often (0: never)")
    p.add_argument("--kill", choices=("any", "pool"), default="any",
                   help="any: main processes and pool children alike; pool: pool children only, "
                   "so the mains stay up through the Triton outage")
    p.add_argument("--flush-at", type=float, default=15.0, help="FLUSHALL on Redis (-1: never)")
    p.add_argument("--pg-restart-at", type=float, default=30.0,
                   help="pg_ctl restart -m fast (-1: never)")
    p.add_argument("--triton-down-at", type=float, default=45.0,
                   help="stop Triton (-1: never)")
    p.add_argument("--triton-outage", type=float, default=300.0,
                   help="how long Triton stays down before it is started on the same ports")
    p.add_argument("--deadline", type=float, default=1800.0,
                   help="stop waiting for the jobs after this and report what is left")
    p.add_argument("--seed", type=int, default=1, help="draws the images and the fault schedule")
    p.add_argument("--set", action="append", default=[], metavar="CLIPLINE_NAME=VALUE",
                   help="a setting for every Clipline process, over the defaults: the run "
                   "sets " + ", ".join(f"CLIPLINE_{k}={v}" for k, v in CLOCKS.items()))
    p.add_argument("--keep", action="store_true",
                   help="keep the run's folder (the processes' logs) instead of removing it")
    args = p.parse_args()
    if not 0 < args.jobs <= len(VARIANTS) * args.images:
        p.error(f"--jobs must be 1 to {len(VARIANTS)} x --images")
    return args


def overrides(pairs: list[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("CLIPLINE_"):
            raise SystemExit(f"--set takes CLIPLINE_NAME=VALUE, got {pair!r}")
        values[name.removeprefix("CLIPLINE_")] = value
    return values


@contextmanager
def stopped_by_signals() -> Iterator[None]:
    """SIGTERM ends the run as Ctrl-C does: through every ``finally``."""
    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace, stack: Stack) -> bool:
    rng = random.Random(args.seed)
    objects, planned = corpus(args.images, args.jobs, rng)
    origin = [time.monotonic()]  # the submit, once it has begun

    def say(line: str) -> None:
        print(f"{time.monotonic() - origin[0]:8.1f} s  {line}", flush=True)

    pg = stack.postgres = Postgres(stack.root)
    pg.start()
    redis_url, s3_url = stack.redis(), stack.moto()
    values = {"DATABASE_URL": pg.url, "REDIS_URL": redis_url, "S3_ENDPOINT_URL": s3_url,
              "S3_OUTPUT_BUCKET": OUTPUT_BUCKET, "SEGMENTER": "triton",
              # The fast model (its figures in docs/RELIABILITY.md were measured with it).
              "MODEL": "u2netp", "MODELS_DIR": str(MODELS), "DATA_DIR": str(stack.root / "data"),
              "LOG_FORMAT": "json", **CLOCKS, **overrides(args.set)}
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLIPLINE_")}
    env = {**base, "AWS_ACCESS_KEY_ID": "chaos", "AWS_SECRET_ACCESS_KEY": "chaos",
           **{f"CLIPLINE_{k}": v for k, v in values.items()}}
    triton = Triton(stack, env)
    env["CLIPLINE_TRITON_URL"] = triton.url
    subprocess.run([CLIPLINE, "models", "pull", "u2netp"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([CLIPLINE, "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL)
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                      aws_access_key_id="chaos", aws_secret_access_key="chaos")
    for bucket in (SOURCE_BUCKET, OUTPUT_BUCKET):
        s3.create_bucket(Bucket=bucket)
    for key, data in objects.items():
        s3.put_object(Bucket=SOURCE_BUCKET, Key=key, Body=data)
    triton.start()
    _wait(triton.ready, 120, "Triton")
    fleet = Fleet(stack, env, args.workers, args.concurrency, say)
    for name in fleet.names:
        fleet.start(name)
    for name in fleet.names:
        _wait(lambda n=name: fleet.ready(n), 120, name)
    print(f"up in {time.monotonic() - origin[0]:.0f} s: PostgreSQL :{pg.port}, {redis_url}, "
          f"moto {s3_url}, Triton {triton.url}; {args.workers} workers x{args.concurrency}, "
          "1 reconciler; times below are from the submit", flush=True)

    manifest = stack.root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(
        {"bucket": SOURCE_BUCKET, "key": p.key, "options": p.options, "priority": p.priority,
         "idempotency_key": p.idempotency_key}) + "\n" for p in planned))
    sampler = Sampler(redis_url, pg.url)
    sampler.start()
    try:
        t0 = origin[0] = time.monotonic()
        done = subprocess.run([CLIPLINE, "submit", "--manifest", str(manifest), "--label",
                               "chaos", "--no-progress"], env=env, check=True,
                              capture_output=True, text=True)
        say(done.stdout.splitlines()[0])
        faults = Injector(args, pg, triton, fleet, sampler, say).run(t0, time.monotonic())
        wall = time.monotonic() - t0
    finally:
        sampler.halt()
    return report(pg.url, s3, OUTPUT_BUCKET, planned, sampler.samples, t0=t0, wall=wall,
                  faults=faults, starts=fleet.starts, exits=fleet.exits)


class Injector:
    """The fault schedule; ``tick`` does what is due at ``t`` seconds from the submit."""

    def __init__(self, args: argparse.Namespace, pg: Postgres, triton: Triton, fleet: Fleet,
                 sampler: Sampler, say: Any) -> None:
        self.args, self.pg, self.triton, self.fleet = args, pg, triton, fleet
        self.sampler, self.say = sampler, say
        self.rng = random.Random(args.seed + 1)
        self.faults: dict[str, Any] = {"kills": {"main": 0, "pool child": 0}, "none_to_kill": 0}
        self.next_kill = args.kill_every if args.kill_every > 0 else float("inf")

    def due(self, fault: str, at: float, t: float) -> bool:
        """Whether the one-off ``fault`` (at ``at``; negative: never) is due and not yet done."""
        return 0 <= at <= t and fault not in self.faults

    def tick(self, t: float) -> None:
        self.fleet.revive()
        if t >= self.next_kill:
            self.next_kill += self.args.kill_every
            self.kill()
        if self.due("flushall", self.args.flush_at, t):
            self.sampler.redis.flushall()
            self.faults["flushall"] = t
            self.say("FLUSHALL")
        if self.due("pg_restart", self.args.pg_restart_at, t):
            began = time.monotonic()
            self.pg.restart()
            self.faults["pg_restart"] = (t, t + time.monotonic() - began)
            self.say("PostgreSQL restarted (pg_ctl restart -m fast)")
        if self.due("triton_down", self.args.triton_down_at, t):
            self.triton.stop()
            self.faults["triton_down"] = t
            self.say(f"Triton stopped for {self.args.triton_outage:g} s")
        if "triton_down" in self.faults and "triton_up" not in self.faults \
                and t >= self.args.triton_down_at + self.args.triton_outage:
            self.bring_back_triton(t)

    def kill(self) -> None:
        victims = self.fleet.victims(mains=self.args.kill == "any")
        if not victims:
            self.faults["none_to_kill"] += 1
            return
        name, role, pid = victims[self.rng.randrange(len(victims))]
        os.kill(pid, signal.SIGKILL)
        self.faults["kills"][role] += 1
        self.say(f"SIGKILL {name} {role} {pid}")

    def bring_back_triton(self, t: float) -> None:
        if self.triton.proc is None:
            self.triton.start()
            self.say("Triton starting on the same ports")
        if self.triton.ready():
            self.faults["triton_up"] = t
            self.say("Triton ready")

    def run(self, t0: float, submitted: float) -> dict[str, Any]:
        """Tick every second until every job is terminal or the deadline passes (a sample taken
        before the submit returned may predate its commit, so it does not count)."""
        while True:
            tick = time.monotonic()
            t = tick - t0
            self.tick(t)
            if self.sampler.settled_after(submitted) or t >= self.args.deadline:
                self.faults["deadline_passed"] = t >= self.args.deadline
                return self.faults
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))


def _wait(ready: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout:g} s")
        time.sleep(0.5)


def main() -> None:
    args = options()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at "
          f"the start; seed {args.seed}", flush=True)
    stack = Stack(Path(tempfile.mkdtemp(prefix="clipline-chaos-")), keep=args.keep)
    try:
        with stopped_by_signals():
            met = run(args, stack)
    except KeyboardInterrupt:
        print("interrupted: stopping every process", flush=True)
        met = False
    finally:
        stack.close()
    raise SystemExit(0 if met else 1)


if __name__ == "__main__":
    main()
