"""``clipline reconcile``: reap expired leases, re-publish lost messages, deliver callbacks,
write the results manifests of finished batches and announce them."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import typer

from clipline.cli.context import celery_queue, checked_ledger, load_settings
from pipeline import bootstrap, logs
from pipeline.batches import settle_stale
from pipeline.reconcile import reconcile_forever, reconcile_once
from pipeline.settings import Settings


def reconcile(
    once: bool = typer.Option(False, "--once", help="One pass, print what it did, exit."),
) -> None:
    """Reap expired leases, re-publish queued jobs whose message is missing or lost, deliver
    due completion callbacks, and write the report of every batch that has finished (beside
    its cut-outs, CLIPLINE_S3_OUTPUT_BUCKET; none without one).

    Runs every CLIPLINE_RECONCILE_INTERVAL_SECONDS until interrupted. Safe to run more than one
    at a time. (A worker started with --beat runs the reaping and publishing on Celery beat.)
    """
    settings = load_settings()
    ledger, queue = checked_ledger(settings), celery_queue()
    config = bootstrap.reconcile_config(settings)
    callbacks = _callbacks(settings, ledger)
    reports = _reports(settings, ledger)
    announce = _batch_callbacks(settings, ledger)

    def settle() -> int:
        return settle_stale(ledger, ledger.clock.now(), settings.batch_settle_after_seconds)

    try:
        if once:
            report = vars(reconcile_once(ledger, queue, config))
            typer.echo(json.dumps({**report, "batches_settled": settle(),
                                   "callbacks": vars(callbacks()),
                                   "batches_reported": reports(),
                                   "batch_callbacks": vars(announce())}))
            return
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        logs.get(__name__).info("reconciler_started",
                                interval=settings.reconcile_interval_seconds)
        if settings.reconcile_metrics_port:
            from prometheus_client import start_http_server

            start_http_server(settings.reconcile_metrics_port)
        reconcile_forever(ledger, queue, config, interval=settings.reconcile_interval_seconds,
                          stop=stop, also=[callbacks, settle, reports, announce],
                          on_report=lambda r: _count(r, queue))
    finally:
        ledger.close()


def _count(report: Any, queue: Any) -> None:
    """The reconciler's metrics, from a pass's report and the broker's queues."""
    from pipeline import metrics

    metrics.RECONCILER_PUBLISHED.inc(report.published)
    metrics.RECONCILER_REAPED.labels("requeued").inc(report.requeued)
    metrics.RECONCILER_REAPED.labels("dead").inc(report.dead)
    for name, depth in queue.depths().items():
        metrics.QUEUE_DEPTH.labels(name).set(depth)


def _callbacks(settings: Settings, ledger: Any) -> Any:
    """One delivery round of due completion callbacks, as a callable."""
    from pipeline.adapters.callbacks.http import HttpSender
    from pipeline.adapters.ledger.tenants import TenantStore
    from pipeline.callbacks import deliver_due
    from pipeline.retry import Backoff

    sender = HttpSender(policy=settings.callback_policy)
    tenants = TenantStore(ledger.engine, ledger.clock)
    backoff = Backoff(settings.backoff_base_seconds, settings.backoff_max_seconds)
    return lambda: deliver_due(ledger, sender, tenants.callback_secret, backoff=backoff,
                               max_attempts=settings.callback_max_attempts)


def _reports(settings: Settings, ledger: Any) -> Any:
    """One round of due batch reports, as a callable (0 and nothing done without a bucket)."""
    from pipeline.batch_report import write_due_reports

    if not settings.s3_output_bucket:
        return lambda: 0
    store = bootstrap.object_store(settings)
    bucket = settings.s3_output_bucket
    return lambda: write_due_reports(ledger, store, bucket=bucket,
                                     output_prefix=settings.output_prefix)


def _batch_callbacks(settings: Settings, ledger: Any) -> Any:
    """One delivery round of due batch report callbacks, as a callable."""
    from pipeline.adapters.callbacks.http import HttpSender
    from pipeline.adapters.ledger.tenants import TenantStore
    from pipeline.batch_callbacks import deliver_due_batches
    from pipeline.retry import Backoff

    sender = HttpSender(policy=settings.callback_policy)
    tenants = TenantStore(ledger.engine, ledger.clock)
    backoff = Backoff(settings.backoff_base_seconds, settings.backoff_max_seconds)
    return lambda: deliver_due_batches(ledger, sender, tenants.callback_secret,
                                       backoff=backoff,
                                       max_attempts=settings.callback_max_attempts)
