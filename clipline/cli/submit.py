"""``clipline worker``, ``clipline reconcile`` and ``clipline submit``: the distributed commands.

They publish to or consume from Celery, which ``pipeline`` never imports, so they are added to
the ``clipline`` command here; the console script enters through this module's ``main``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import typer

from pipeline import bootstrap, fields, logs
from pipeline.batches import settle_stale
from pipeline.cli import app
from pipeline.cli import main as cli_main
from pipeline.cli.run import ProgressBar, console, output_options
from pipeline.errors import ClipError, InvalidField, InvalidSettings, UsageError
from pipeline.fields import shown
from pipeline.intake import manifest_lines, prefix_specs, queued_pages, specs_of, url_spec
from pipeline.jobs import DEFAULT_TENANT, Dispatch, JobSpec
from pipeline.reconcile import reconcile_forever, reconcile_once
from pipeline.settings import Settings

PAGE = 1000


def _settings() -> Settings:
    settings = Settings()
    logs.configure(settings.log_format, settings.log_level)
    return settings


def _ledger(settings: Settings) -> Any:
    from pipeline.adapters.database import current_revision, head_revision, redact_url
    from pipeline.adapters.ledger_sql import SqlLedger

    ledger = SqlLedger.from_settings(settings)
    found, wanted = current_revision(ledger.engine), head_revision()
    if found != wanted:
        ledger.close()
        raise InvalidSettings(
            f"the ledger at {redact_url(settings.ledger_url)} is at schema {found or 'none'}, "
            f"this code needs {wanted}: run `clipline db upgrade`"
        )
    return ledger


def _queue(settings: Settings | None = None) -> Any:
    """The Celery queue: the process's own app, or one built from ``settings``."""
    from workers.app import app as celery_app
    from workers.app import create_app
    from workers.queue import CeleryQueue

    return CeleryQueue(celery_app if settings is None else create_app(settings))


# -- worker -----------------------------------------------------------------------------------


@app.command("worker")
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
    settings = _settings()
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
    _ledger(settings).close()
    _queue().depth()  # BrokerUnavailable names the broker
    # Builds the model runner once: a missing ONNX file or a Triton without the model fails here.
    bootstrap.segmenter(settings, threads=1)


# -- reconcile --------------------------------------------------------------------------------


@app.command("reconcile")
def reconcile(
    once: bool = typer.Option(False, "--once", help="One pass, print what it did, exit."),
) -> None:
    """Reap expired leases, re-publish queued jobs whose message is missing or lost, and deliver
    due completion callbacks.

    Runs every CLIPLINE_RECONCILE_INTERVAL_SECONDS until interrupted. Safe to run more than one
    at a time. (A worker started with --beat runs the reaping and publishing on Celery beat.)
    """
    settings = _settings()
    ledger, queue = _ledger(settings), _queue()
    config = bootstrap.reconcile_config(settings)
    callbacks = _callbacks(settings, ledger)

    def settle() -> int:
        return settle_stale(ledger, ledger.clock.now(), settings.batch_settle_after_seconds)

    try:
        if once:
            report = vars(reconcile_once(ledger, queue, config))
            typer.echo(json.dumps({**report, "batches_settled": settle(),
                                   "callbacks": vars(callbacks())}))
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
                          stop=stop, also=[callbacks, settle],
                          on_report=lambda r: _count(r, queue))
    finally:
        ledger.close()


# -- api --------------------------------------------------------------------------------------


def api_app(settings: Settings) -> Any:
    """The HTTP API composed with the real clients (also used by the tests)."""
    from pipeline.adapters.s3_store import S3Store, make_client
    from pipeline.adapters.tenant_store import TenantStore
    from pipeline.api.app import create_app
    from pipeline.api.deps import ApiDeps

    ledger = _ledger(settings)
    return create_app(ApiDeps(
        settings=settings, ledger=ledger, tenants=TenantStore(ledger.engine, ledger.clock),
        queue=_queue(settings),
        # The API reads manifests only (workers read the images): its cap is the manifest's.
        store=S3Store(make_client(settings), max_bytes=settings.api_max_manifest_bytes),
    ))


@app.command("api")
def api(
    host: str | None = typer.Option(None, help="Default CLIPLINE_API_HOST."),
    port: int | None = typer.Option(None, help="Default CLIPLINE_API_PORT."),
) -> None:
    """Serve the submit-and-poll HTTP API (OpenAPI at /docs and /openapi.json).

    Tenants and keys come from `clipline tenants`. Jobs submitted here are published to the
    workers at once; `clipline reconcile` covers what Redis loses.
    """
    import uvicorn

    settings = _settings()
    app_ = api_app(settings)
    # One process per `clipline api`: run more of them behind a load balancer to scale.
    uvicorn.run(app_, host=host or settings.api_host, port=port or settings.api_port,
                log_config=None, timeout_graceful_shutdown=10)


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
    from pipeline.adapters.http_callbacks import HttpSender
    from pipeline.adapters.tenant_store import TenantStore
    from pipeline.callbacks import deliver_due
    from pipeline.retry import Backoff

    sender, tenants = HttpSender(), TenantStore(ledger.engine, ledger.clock)
    backoff = Backoff(settings.backoff_base_seconds, settings.backoff_max_seconds)
    return lambda: deliver_due(ledger, sender, tenants.callback_secret, backoff=backoff,
                               max_attempts=settings.callback_max_attempts)


# -- submit -----------------------------------------------------------------------------------


@app.command("submit")
def submit(
    urls: list[str] | None = typer.Argument(None, help="Objects: s3://bucket/key[?versionId=]"),
    prefix: str | None = typer.Option(None, "--prefix", help="Every image under "
                                      "s3://bucket/prefix/ (by file extension)."),
    manifest: Path | None = typer.Option(None, "--manifest", exists=True, dir_okay=False,
                                         help="A file with one job per line: an S3 URL or a "
                                         "JSON object (bucket, key, version, options, priority)."),
    priority: int = typer.Option(0, min=fields.PRIORITY.low, max=fields.PRIORITY.high,
                                 help="Job priority, -100 to 100; CLIPLINE_INTERACTIVE_PRIORITY "
                                 "or more goes to the interactive queue."),
    label: str | None = typer.Option(None, help="A label for the batch."),
    batch: uuid.UUID | None = typer.Option(None, "--batch", help="Add to this batch id."),
    tenant: str = typer.Option(DEFAULT_TENANT, help="Tenant the jobs belong to."),
    fmt: str = typer.Option("png", "--format", help="png, webp or jpg."),
    crop: bool = typer.Option(False, help="Crop to the subject."),
    bg_color: str | None = typer.Option(None, help="Flatten onto this colour."),
    subject: str = typer.Option("all", help="all: the whole mask; main: the main subject(s)."),
    progress: bool = typer.Option(True, help="Show progress bars on a terminal."),
) -> None:
    """Record jobs in the ledger as one batch, then publish their wake-up messages.

    Exactly one source: URLs, --prefix or --manifest. Submitting the same objects with the same
    options again creates no new jobs (they are reported as already known). The batch is
    recorded in one transaction, and a manifest is checked whole first: a bad line refuses it
    before anything is written.
    """
    if sum([bool(urls), prefix is not None, manifest is not None]) != 1:
        raise typer.BadParameter("give S3 URLs, --prefix or --manifest (exactly one)")
    fields.TENANT.check(tenant)
    if label is not None:
        fields.LABEL.check(label)
    settings = _settings()
    defaults = {
        "options": output_options(fmt, "rgba", bg_color, crop, "0", None, subject, False)
        .normalised(),
        "priority": priority, "model": settings.model,
    }
    # A first pass refuses a bad manifest line, URL or prefix before anything is written (a
    # prefix is listed only once, while recording: its keys are counted then).
    total: int | None = None
    if prefix is not None:
        _prefix(prefix)
    else:
        total = sum(1 for _ in _specs(settings, urls, None, manifest, defaults))
    ledger = _ledger(settings)
    try:
        ledger.ensure_tenant(tenant)
        batch_id = ledger.create_batch(tenant, label=label, batch_id=batch)
        specs = _specs(settings, urls, prefix, manifest, defaults)
        with ProgressBar(total, progress and console.is_terminal, "recording", "job") as advance:
            result = ledger.submit_many(_counted(specs, advance), tenant=tenant,
                                        batch_id=batch_id)
        sent = _publish(ledger, batch_id, progress)
    finally:
        ledger.close()
    typer.echo(f"batch {batch_id}: {result.received} received, {result.inserted} new, "
               f"{result.duplicates} already submitted; {sent} message(s) sent")
    typer.echo(f"follow it with: clipline status --batch {batch_id}")


def _specs(settings: Settings, urls: list[str] | None, prefix: str | None,
           manifest: Path | None, defaults: dict[str, Any]) -> Iterator[JobSpec]:
    if manifest is not None:
        with manifest.open("rb") as raw:
            yield from specs_of(manifest.name, manifest_lines(raw), defaults)
    elif prefix is not None:
        bucket, key_prefix = _prefix(prefix)
        from pipeline.adapters.s3_store import S3Store, make_client

        yield from prefix_specs(bucket, S3Store(make_client(settings)).list_keys(bucket,
                                                                                 key_prefix),
                                defaults)
    else:
        for url in urls or []:
            try:
                spec = url_spec(url, defaults)
            except InvalidField:
                raise  # already a usage error, with its field and code
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
            yield spec


def _prefix(prefix: str) -> tuple[str, str]:
    bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
    if not prefix.startswith("s3://") or not bucket:
        raise UsageError(f"--prefix must look like s3://bucket/prefix/, got {shown(prefix)}")
    return fields.BUCKET.check(bucket), fields.PREFIX.check(key_prefix)


def _counted(specs: Iterable[JobSpec], advance: Any) -> Iterator[JobSpec]:
    n = 0
    for n, spec in enumerate(specs, start=1):
        yield spec
        if n % 1000 == 0:
            advance(1000)
    advance(n % 1000)


def _publish(ledger: Any, batch_id: uuid.UUID, progress: bool) -> int:
    """Publish the batch's queued jobs, a page at a time. If the broker is down the jobs stay
    recorded, and the reconciler sends their messages later: say so, and do not fail."""
    queue, sent = _queue(), 0
    with ProgressBar(None, progress and console.is_terminal, "publishing", "msg") as advance:
        for page in queued_pages(ledger, batch_id, PAGE):
            try:
                queue.publish([Dispatch(j.id, j.priority) for j in page])
            except ClipError as exc:
                console.print(f"[yellow]warning[/]: {exc.message}; the jobs are recorded and "
                              "`clipline reconcile` will publish them")
                return sent
            sent += len(page)
            advance(len(page))
    return sent


def main() -> None:
    cli_main()


from workers import cli_events  # noqa: E402,F401  (registers `clipline events`)
