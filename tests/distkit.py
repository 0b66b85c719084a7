"""A whole Clipline deployment on this machine, for integration tests and benchmarks.

Real services only: the machine's PostgreSQL (a database per cluster) and Redis (a database
number of its own), moto's S3 server, a Triton server (or the in-process model), a real
``clipline worker`` process and a real ``clipline reconcile`` process, all configured through
``CLIPLINE_*`` variables exactly as a deployment would be.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import redis
import uvicorn
from sqlalchemy import create_engine, text

from pipeline.adapters.ledger.database import upgrade
from pipeline.adapters.ledger.sql import SqlLedger
from pipeline.adapters.storage.s3 import S3Store, make_client
from pipeline.jobs import JobStatus
from pipeline.settings import Settings
from tests.modelkit import TEST_MODEL
from workers.app import create_app
from workers.queue import CeleryQueue

CLIPLINE = str(Path(sys.executable).with_name("clipline"))
PG_SERVER = os.environ.get("CLIPLINE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

# Short clocks so failures are recovered in seconds, not minutes.
FAST = {
    "LEASE_SECONDS": "4", "HEARTBEAT_SECONDS": "1", "BACKOFF_BASE_SECONDS": "0.5",
    "BACKOFF_MAX_SECONDS": "2", "MAX_ATTEMPTS": "8", "RECONCILE_INTERVAL_SECONDS": "0.5",
    "RECONCILE_LOST_AFTER_SECONDS": "3", "TASK_SOFT_TIME_LIMIT_SECONDS": "30",
    "TASK_TIME_LIMIT_SECONDS": "45", "BROKER_VISIBILITY_TIMEOUT_SECONDS": "120",
    "LOG_FORMAT": "json", "WORKER_METRICS_PORT": "0", "RECONCILE_METRICS_PORT": "0",
    "EVENTS_METRICS_PORT": "0",
}


class Cluster:
    def __init__(self, workdir: Path, s3_endpoint: str | None, *, redis_db: int,
                 overrides: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.database = f"clipline_dist_{uuid.uuid4().hex[:10]}"
        self.redis_url = f"redis://127.0.0.1:6379/{redis_db}"
        self.values = {
            "DATABASE_URL": f"{PG_SERVER}/{self.database}", "REDIS_URL": self.redis_url,
            "S3_OUTPUT_BUCKET": "out-" + uuid.uuid4().hex[:8],
            "DATA_DIR": str(workdir / "data"), "MODEL": TEST_MODEL, **FAST, **overrides,
        }
        if s3_endpoint is not None:
            self.values["S3_ENDPOINT_URL"] = s3_endpoint
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.redis = redis.Redis.from_url(self.redis_url)

    # -- set-up -----------------------------------------------------------------------------

    def create(self) -> None:
        admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.database}"'))
        admin.dispose()
        upgrade(self.settings.ledger_url)
        self.redis.flushdb()
        if "S3_ENDPOINT_URL" in self.values:
            self.s3.client.create_bucket(Bucket=self.values["S3_OUTPUT_BUCKET"])
            self.s3.client.create_bucket(Bucket="photos")
        self.ledger = SqlLedger.from_settings(self.settings)
        self.queue = CeleryQueue(create_app(self.settings))

    def destroy(self) -> None:
        for proc, _ in self.processes:
            _kill(proc)
        self.ledger.close()
        self.redis.flushdb()
        admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
        admin.dispose()

    @property
    def settings(self) -> Settings:
        lowered = {k.lower(): v for k, v in self.values.items()}
        return Settings(**lowered)  # type: ignore[arg-type]

    @property
    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("CLIPLINE_")}
        return {**base, **AWS, **{f"CLIPLINE_{k}": v for k, v in self.values.items()}}

    @property
    def s3(self) -> S3Store:
        os.environ.update(AWS)
        return S3Store(make_client(self.settings))

    @property
    def output_bucket(self) -> str:
        return self.values["S3_OUTPUT_BUCKET"]

    # -- processes --------------------------------------------------------------------------

    def start(
        self, *args: str, ready: str | None = None, timeout: float = 60
    ) -> subprocess.Popen[bytes]:
        """Start ``clipline ARGS`` in its own process group; wait for ``ready`` in its log."""
        log = self.workdir / f"{args[0]}-{len(self.processes)}.log"
        with log.open("wb") as out:  # the child keeps its own descriptor
            proc = subprocess.Popen([CLIPLINE, *args], env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append((proc, log))
        if ready is not None:
            def up() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"clipline {args[0]} exited:\n{_tail(log, proc)}")
                return ready in log.read_text(errors="replace")

            wait_for(up, timeout,
                     f"clipline {' '.join(args)} to be ready", lambda: _tail(log, proc))
        return proc

    def start_worker(self, concurrency: int = 2, timeout: float = 60,
                     pool: str = "prefork", beat: bool = False) -> subprocess.Popen[bytes]:
        """Start a worker and wait until it answers a ping over the broker (whatever it logs)."""
        options = [f"--concurrency={concurrency}", f"--pool={pool}"] + (["--beat"] if beat else [])
        proc = self.start("worker", *options)
        log = self.processes[-1][1]

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"clipline worker exited:\n{_tail(log, proc)}")
            return bool(self.queue.app.control.ping(timeout=0.5))

        wait_for(answers, timeout, "the worker to answer a ping", lambda: _tail(log, proc))
        return proc

    def start_reconciler(self) -> subprocess.Popen[bytes]:
        return self.start("reconcile", ready="reconciler_started")

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and its children (a prefork worker's pool dies with it)."""
        _kill(proc)

    def logs(self) -> str:
        """The end of every process's log, for failure messages."""
        return "\n".join(f"== {log.name}\n{_tail(log, proc)}" for proc, log in self.processes)

    def log_text(self) -> str:
        """Every process's whole log."""
        return "\n".join(log.read_text(errors="replace") for _, log in self.processes)

    # -- jobs -------------------------------------------------------------------------------

    def put_image(self, key: str, data: bytes) -> str:
        self.s3.put("photos", key, data, content_type="application/octet-stream")
        return f"s3://photos/{key}"

    def wait_batch(self, batch_id: uuid.UUID, timeout: float = 90) -> Any:
        """Wait until no job of the batch is queued or running; return the counts."""
        def settled() -> bool:
            counts = self.ledger.batch_counts(batch_id)
            return counts.total > 0 and counts[JobStatus.QUEUED] + counts[JobStatus.RUNNING] == 0

        wait_for(settled, timeout, f"batch {batch_id} to settle", self.logs)
        return self.ledger.batch_counts(batch_id)

    def output_keys(self, job_id: uuid.UUID) -> list[str]:
        listed = self.s3.list_keys(self.output_bucket, "cutouts/")
        return [k for k in listed if str(job_id) in k]


def wait_for(condition: Callable[[], bool], timeout: float, what: str,
             details: Callable[[], str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n"
                         + (details() if details else ""))


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with suppress(ProcessLookupError):  # it died by itself meanwhile
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _tail(log: Path, proc: subprocess.Popen[bytes], lines: int = 40) -> str:
    text_ = log.read_text(errors="replace") if log.exists() else ""
    return f"(exit {proc.poll()})\n" + "\n".join(text_.splitlines()[-lines:])


@contextmanager
def cluster(workdir: Path, s3_endpoint: str | None, *, redis_db: int = 13,
            **overrides: str) -> Iterator[Cluster]:
    made = Cluster(workdir, s3_endpoint, redis_db=redis_db, overrides=overrides)
    made.create()
    try:
        yield made
    finally:
        made.destroy()


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.deps.ledger.close()
