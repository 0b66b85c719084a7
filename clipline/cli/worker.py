"""``clipline worker``: a Celery worker that cuts out the jobs published on Redis."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from pathlib import Path

import typer

from clipline.cli.context import celery_queue, checked_ledger, load_settings
from pipeline import bootstrap
from pipeline.settings import Settings


def worker(
    concurrency: int | None = typer.Option(
        None, help="Worker processes (default CLIPLINE_WORKER_CONCURRENCY, else CPU count)."),
    queues: str = typer.Option("interactive,bulk", help="Queues to consume, first preferred."),
    pool: str = typer.Option("prefork", help="Celery pool: prefork, or solo (one process)."),
    beat: bool = typer.Option(False, help="Also run the reconciler on Celery beat in this "
                              "worker (one such worker per deployment)."),
) -> None:
    """Start a Celery worker that cuts out the jobs published on Redis.

    Before starting it checks what it depends on and stops with one clear line if something is
    missing: the ledger's schema, the output bucket, the broker, and the model (a Triton server
    with the model ready, or the ONNX file).
    """
    _multiprocess_metrics()
    settings = load_settings()
    _preflight(settings)
    from workers.app import app as celery_app

    if settings.worker_metrics_port:
        from workers.metrics import serve_pool_metrics

        serve_pool_metrics(settings.worker_metrics_port)
    processes = concurrency or settings.worker_concurrency or os.cpu_count() or 1
    argv = [
        "worker", f"--concurrency={processes}", f"--queues={queues}", f"--pool={pool}",
        f"--loglevel={settings.log_level}", "--without-gossip", "--without-mingle",
        f"--max-memory-per-child={settings.worker_max_memory_per_child_mb * 1024}",
        "--hostname=clipline-%h-" + uuid.uuid4().hex[:6],
    ]
    if beat:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        argv.append("--beat")
    celery_app.worker_main(argv)


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


def _preflight(settings: Settings) -> None:
    bootstrap.output_bucket(settings)
    checked_ledger(settings).close()
    celery_queue().depth()  # BrokerUnavailable names the broker
    # Builds the model runner once: a missing ONNX file or a Triton without the model fails here.
    bootstrap.segmenter(settings, threads=1)
