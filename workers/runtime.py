"""Per-process state of a worker: clients are built after the fork, in the process that uses them.

A prefork pool forks its children from the main process; a database pool, a boto3 client or a
gRPC channel created before the fork would be shared by every child and break. So nothing is
built at import: the first task in each process builds it, keyed by the process id.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init

from pipeline import bootstrap, logs
from pipeline.adapters.ledger.sql import SqlLedger
from pipeline.errors import ClipError, OperationTimeout
from pipeline.model_registry import ModelRegistry
from pipeline.reconcile import ReconcileConfig
from pipeline.worker import JobRunner
from workers.app import app, settings
from workers.queue import CeleryQueue


@dataclass
class _State:
    pid: int
    queue: CeleryQueue
    runner: JobRunner | None = None
    ledger: SqlLedger | None = None


_state: _State | None = None
_lock = threading.Lock()
# Held while a client is built (slow: a model session, a database pool), apart from ``_lock``.
_building = threading.Lock()


def _current() -> _State:
    global _state
    with _lock:
        if _state is None or _state.pid != os.getpid():
            _state = _State(os.getpid(), CeleryQueue(app))
        return _state


def translate(exc: Exception) -> ClipError | None:
    """Celery's own exceptions that a job may meet, as Clipline errors."""
    if isinstance(exc, SoftTimeLimitExceeded):
        return OperationTimeout(  # the job's own time limit: it spends an attempt
            f"the job ran past the soft time limit ({settings.task_soft_time_limit_seconds:g} s)",
            outage=False,
        )
    return None


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def runner() -> JobRunner:
    state = _current()
    if state.runner is None:
        with _building:  # the threads pool's first tasks arrive together: build one runner
            if state.runner is None:
                # One intra-op thread: the pool already runs one job per CPU (or per thread).
                state.runner = bootstrap.job_runner(
                    settings, state.queue, worker=worker_name(), translate=translate,
                    segmenter_threads=1,
                )
    return state.runner


def ledger() -> SqlLedger:
    state = _current()
    if state.ledger is None:
        with _building:
            if state.ledger is None:
                state.ledger = SqlLedger.from_settings(settings)
    return state.ledger


def queue() -> CeleryQueue:
    return _current().queue


def reconcile_config() -> ReconcileConfig:
    return bootstrap.reconcile_config(settings)


@worker_process_init.connect
def _warm(**_: object) -> None:
    """Build the clients as each pool process starts, so the first job does not pay for it: the
    default model's; another served model is built by the first job that asks for it."""
    try:
        models = runner().segmenters
        if isinstance(models, ModelRegistry):
            models.warm()
    except ClipError as exc:  # Triton restarting, say: jobs will retry until it is back
        logs.get(__name__).warning("worker_warm_up_failed", reason=exc.reason,
                                   message=exc.message)
