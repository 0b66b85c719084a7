"""Serving the workers' Prometheus metrics: the pool processes' counts, summed.

``clipline worker`` runs with ``PROMETHEUS_MULTIPROC_DIR`` set (it sets it itself when the
deployment did not); each pool process writes its metrics there, and the main process serves
the sum on ``CLIPLINE_WORKER_METRICS_PORT``.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery.signals import worker_process_shutdown
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def fresh_directory(path: Path) -> None:
    """Files left by an earlier run would be summed in: start from an empty directory."""
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink()


def serve_pool_metrics(port: int) -> None:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(port, addr="0.0.0.0", registry=registry)


@worker_process_shutdown.connect
def _forget_process(pid: int | None = None, **_: object) -> None:
    # A replaced pool process's live gauges must stop counting.
    multiprocess.mark_process_dead(pid or os.getpid())
