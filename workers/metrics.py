"""Serving the workers' Prometheus metrics (the pool processes' counts, summed) and readiness.

``clipline worker`` runs with ``PROMETHEUS_MULTIPROC_DIR`` set (it sets it itself when the
deployment did not); each pool process writes its metrics there, and the main process serves
the sum on ``CLIPLINE_WORKER_METRICS_PORT``: ``/metrics`` for Prometheus, ``/readyz`` for a
readiness probe or a person (200 ``ready``, or 503 and the reason on one line).

Not ready while any pool process has a circuit breaker open (a dependency is down and the
process takes no jobs, ``pipeline/breaker.py``), and, when Triton did not answer as the worker
started, until a job has succeeded since (the first proof that inference works).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from celery.signals import worker_process_shutdown
from prometheus_client import CollectorRegistry, make_wsgi_app, multiprocess
from prometheus_client.metrics_core import Metric

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def fresh_directory(path: Path) -> None:
    """Files left by an earlier run would be summed in: start from an empty directory."""
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink()


def readiness(open_circuits: Iterable[str], succeeded: float,
              inference_answered_at_start: bool) -> tuple[bool, str]:
    """The worker's readiness from the pool's state: (ready, one line saying why)."""
    down = sorted(set(open_circuits))
    if down:
        return False, f"not ready: circuit open for {', '.join(down)} (no jobs taken)"
    if not inference_answered_at_start and succeeded <= 0:
        return False, "not ready: Triton did not answer at start and no job has succeeded since"
    return True, "ready"


def pool_state(families: Iterable[Metric]) -> tuple[list[str], float]:
    """Open circuits and succeeded job runs, from the summed pool metrics."""
    open_circuits: list[str] = []
    succeeded = 0.0
    for family in families:
        for sample in family.samples:
            if sample.name == "clipline_circuit_open" and sample.value >= 1:
                open_circuits.append(sample.labels.get("dependency", "?"))
            elif (sample.name == "clipline_jobs_total"
                  and sample.labels.get("outcome") == "succeeded"):
                succeeded += sample.value
    return open_circuits, succeeded


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # a probe every few seconds is not news


def serve_pool_metrics(port: int, *, inference_answered_at_start: bool = True) -> None:
    """Serve ``/metrics`` and ``/readyz`` on ``port`` (all interfaces) from a daemon thread.

    Raises OSError when the port cannot be bound (in use, not allowed).
    """
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    metrics_app = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/readyz":
            served: Iterable[bytes] = metrics_app(environ, start_response)
            return served
        ready, why = readiness(*pool_state(registry.collect()), inference_answered_at_start)
        status = "200 OK" if ready else "503 Service Unavailable"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [why.encode() + b"\n"]

    server = make_server("0.0.0.0", port, app, server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


@worker_process_shutdown.connect
def _forget_process(pid: int | None = None, **_: object) -> None:
    # A replaced pool process's live gauges must stop counting.
    multiprocess.mark_process_dead(pid or os.getpid())
