"""``clipline submit``: record S3 objects as jobs of one batch, then publish them to the workers."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import typer

from clipline.cli.context import celery_queue, checked_ledger, load_settings
from clipline.cli.run import ProgressBar, console, output_options
from pipeline import fields
from pipeline.errors import ClipError, InvalidField, UsageError
from pipeline.fields import shown
from pipeline.intake import manifest_lines, prefix_specs, queued_pages, specs_of, url_spec
from pipeline.jobs import DEFAULT_TENANT, Dispatch, JobSpec
from pipeline.models import check_served
from pipeline.output_keys import Destination, Placer
from pipeline.settings import Settings

PAGE = 1000


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
    model: str | None = typer.Option(None, help="Model of every job whose line names none, one "
                                     "of CLIPLINE_SERVED_MODELS (default: CLIPLINE_MODEL)."),
    label: str | None = typer.Option(None, help="A label for the batch."),
    batch: uuid.UUID | None = typer.Option(None, "--batch", help="Add to this batch id."),
    tenant: str = typer.Option(DEFAULT_TENANT, help="Tenant the jobs belong to."),
    fmt: str = typer.Option("png", "--format", help="png, webp or jpg."),
    crop: bool = typer.Option(False, help="Crop to the subject."),
    bg_color: str | None = typer.Option(None, help="Flatten onto this colour."),
    subject: str = typer.Option("all", help="all: the whole mask; main: the main subject(s)."),
    progress: bool = typer.Option(True, help="Show progress bars on a terminal."),
    output_bucket: str | None = typer.Option(
        None, "--output-bucket", help="Write the cut-outs to this bucket (default: "
        "CLIPLINE_S3_OUTPUT_BUCKET). The operator's own command: no output allowlist applies."),
    key_template: str | None = typer.Option(
        None, "--key-template", help="Output keys from the source key, e.g. "
        "'{prefix}/{key_dir}/{key_stem}.{ext}' (placeholders: prefix tenant bucket key key_dir "
        "key_name key_stem key_ext ext model). Two jobs that would write one key refuse the "
        "batch. Default: <prefix>/<job id>.<ext>."),
) -> None:
    """Record jobs in the ledger as one batch, then publish their wake-up messages.

    Exactly one source: URLs, --prefix or --manifest. Submitting the same objects with the same
    options again creates no new jobs (they are reported as already known). The batch is
    recorded in one transaction, and a manifest is checked whole first: a bad line, or two
    jobs whose --key-template makes one key, refuses it before anything is written.
    """
    if sum([bool(urls), prefix is not None, manifest is not None]) != 1:
        raise typer.BadParameter("give S3 URLs, --prefix or --manifest (exactly one)")
    fields.TENANT.check(tenant)
    if label is not None:
        fields.LABEL.check(label)
    settings = load_settings()
    defaults = {
        "options": output_options(fmt, "rgba", bg_color, crop, "0", None, subject, False)
        .normalised(),
        "priority": priority, "model": check_served(model or settings.model, settings.served),
    }
    destination = Destination.of(output_bucket, key_template)

    def placed(specs: Iterable[JobSpec]) -> Iterable[JobSpec]:
        if destination is None:
            return specs
        return Placer(destination, tenant, tenant=None, output_prefix=settings.output_prefix,
                      own_bucket=settings.s3_output_bucket).place_all(specs)

    # A first pass refuses a bad manifest line, URL or prefix before anything is written (a
    # prefix is listed only once, while recording: its keys are counted then).
    total: int | None = None
    if prefix is not None:
        _prefix(prefix)
    else:
        total = sum(1 for _ in placed(_specs(settings, urls, None, manifest, defaults)))
    ledger = checked_ledger(settings)
    try:
        ledger.ensure_tenant(tenant)
        batch_id = ledger.create_batch(tenant, label=label, batch_id=batch)
        specs = placed(_specs(settings, urls, prefix, manifest, defaults))
        with ProgressBar(total, progress and console.is_terminal, "recording", "job") as advance:
            result = ledger.submit_many(_counted(specs, advance), tenant=tenant,
                                        batch_id=batch_id)
        if batch is not None and result.inserted:
            ledger.report_due(batch_id)  # a finished batch grew: report it again when done
        sent = _publish(ledger, batch_id, progress)
    finally:
        ledger.close()
    typer.echo(f"batch {batch_id}: {result.received} received, {result.inserted} new, "
               f"{result.duplicates} already submitted; {sent} message(s) sent")
    typer.echo(f"follow it with: clipline status --batch {batch_id}")


def _specs(settings: Settings, urls: list[str] | None, prefix: str | None,
           manifest: Path | None, defaults: dict[str, Any]) -> Iterator[JobSpec]:
    """The specs asked for, each of a served model (``ModelNotServed`` otherwise)."""
    for spec in _sources(settings, urls, prefix, manifest, defaults):
        check_served(spec.model, settings.served)  # a manifest line may name its own
        yield spec


def _sources(settings: Settings, urls: list[str] | None, prefix: str | None,
             manifest: Path | None, defaults: dict[str, Any]) -> Iterator[JobSpec]:
    if manifest is not None:
        with manifest.open("rb") as raw:
            yield from specs_of(manifest.name, manifest_lines(raw), defaults)
    elif prefix is not None:
        bucket, key_prefix = _prefix(prefix)
        from pipeline.adapters.storage.s3 import S3Store, make_client

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
    queue, sent = celery_queue(), 0
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
