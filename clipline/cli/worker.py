"""``clipline worker``: a Celery worker that cuts out the jobs published on Redis."""

from __future__ import annotations

import os
import sys
import tempfile
from enum import StrEnum
from pathlib import Path

import typer

from clipline.cli.context import celery_queue, checked_ledger, load_settings
from pipeline import bootstrap, logs
from pipeline.errors import InferenceUnavailable, InvalidSettings
from pipeline.settings import Settings

log = logs.get(__name__)


class Pool(StrEnum):
    """Celery's execution pools that ``clipline worker`` supports."""

    PREFORK = "prefork"
    THREADS = "threads"
    SOLO = "solo"


def worker(
    concurrency: int | None = typer.Option(
        None, help="Jobs at once: pool processes for prefork, threads for threads (default "
        "CLIPLINE_WORKER_CONCURRENCY, else CPU count)."),
    queues: str = typer.Option("interactive,bulk", help="Queues to consume, first preferred."),
    pool: Pool = typer.Option(
        "prefork", help="Celery pool. prefork: a process per job at once, with the time limits "
        "enforced. threads: --concurrency jobs in one process, so one job's S3 and image work "
        "overlaps another's Triton request (for CLIPLINE_SEGMENTER=triton); Celery enforces no "
        "time limits on it, only S3's and Triton's own timeouts hold. solo: one job at a time "
        "in this process, no time limits either."),
    beat: bool = typer.Option(False, help="Also run the reconciler on Celery beat in this "
                              "worker (one such worker per deployment)."),
) -> None:
    """Start a Celery worker that cuts out the jobs published on Redis.

    Before starting it checks what it depends on and stops with one clear line if something is
    missing: the ledger's schema, the output bucket, the broker, the metrics port, and the model
    (the ONNX file, or a Triton server with the model). A Triton that does not answer yet is
    not fatal: the worker starts, and its processes take jobs once Triton answers.

    Several workers on one host: give each its own CLIPLINE_WORKER_METRICS_PORT (or 0 for
    none), or run one worker with a larger --concurrency. That port serves /metrics and
    /readyz (503 with the reason while a dependency is down, else 200).

    Exit status: 2, with one line, when a check fails before start; Celery's own status (1)
    when it stops on an unrecoverable error, so a supervisor restarts it.
    """
    _multiprocess_metrics()
    settings = load_settings()
    inference_answered = _preflight(settings)
    from workers.app import app as celery_app
    from workers.app import start_worker, worker_argv

    if settings.worker_metrics_port:
        from workers.metrics import serve_pool_metrics

        try:
            serve_pool_metrics(settings.worker_metrics_port,
                               inference_answered_at_start=inference_answered)
        except OSError as exc:
            raise InvalidSettings(
                f"CLIPLINE_WORKER_METRICS_PORT={settings.worker_metrics_port}: {exc.strerror}; "
                "give each worker on this host its own port, or 0 to serve no metrics"
            ) from exc
    processes = concurrency or settings.worker_concurrency or os.cpu_count() or 1
    if pool is not Pool.PREFORK:
        log.warning("worker_time_limits_not_enforced", pool=pool.value,
                    soft_limit_s=settings.task_soft_time_limit_seconds,
                    note="S3 and Triton calls still time out (CLIPLINE_S3_READ_TIMEOUT_SECONDS, "
                         "CLIPLINE_TRITON_TIMEOUT_SECONDS); a job stuck elsewhere keeps its "
                         "thread and its lease until the worker restarts")
    argv = worker_argv(settings, processes, queues, pool.value)
    if beat:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        argv.append("--beat")
    status = start_worker(celery_app, argv)
    if status:  # Celery logged why (CRITICAL "Unrecoverable error"); a supervisor restarts it
        raise typer.Exit(status)


def _multiprocess_metrics() -> None:
    """Pool processes count into files that the main process sums. prometheus-client picks
    that mode when it is imported, and this process imported it already: so, when the
    directory is not set yet, set it and start the command again from the top."""
    from workers.metrics import MULTIPROC_ENV, fresh_directory

    if os.environ.get(MULTIPROC_ENV):
        fresh_directory(Path(os.environ[MULTIPROC_ENV]))
        return
    os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="clipline-metrics-")
    os.execv(sys.argv[0], sys.argv)


def _preflight(settings: Settings) -> bool:
    """Stop with one line on what is missing; return whether the model runner answered."""
    bootstrap.output_bucket(settings)
    checked_ledger(settings).close()
    celery_queue().depth()  # BrokerUnavailable names the broker
    # Builds each served model's runner once: a missing ONNX file or a Triton without one of
    # the models fails here.
    try:
        for model in settings.served:
            bootstrap.segmenter(settings, model=model, threads=1)
    except InferenceUnavailable as exc:  # down for now: the breakers hold work until it answers
        log.warning("inference_unavailable_at_start", message=exc.message,
                    action="starting anyway; jobs wait until Triton answers")
        return False
    return True
