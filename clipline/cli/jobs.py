"""``clipline status`` and ``clipline redrive``: look at jobs and send dead letters back.

Both work on the ledger of the settings (``CLIPLINE_DATABASE_URL``), or on an embedded run's
ledger with ``--run DST``. An embedded run's batch holds one job per file, its current version's
(superseded versions are filed in a second batch), so ``status --run DST --batch ID`` counts
what the run's summary counts, refusals included.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import typer

from pipeline import fields
from pipeline.embedded import HISTORY_OF, STATE_DIR
from pipeline.errors import BatchNotFound, UsageError
from pipeline.jobs import DEFAULT_TENANT, JobStatus
from pipeline.settings import Settings

RUN = typer.Option(None, "--run", help="Use the ledger of an embedded run's output folder.",
                   exists=True, file_okay=False)
TENANT = typer.Option(DEFAULT_TENANT, "--tenant", help="Tenant whose jobs to act on.")


def _ledger(run: Path | None) -> Any:
    from pipeline.adapters.ledger.database import make_engine
    from pipeline.adapters.ledger.sql import SqlLedger

    if run is None:
        return SqlLedger.from_settings(Settings())
    db = run / STATE_DIR / "ledger.sqlite3"
    if not db.is_file():
        raise typer.BadParameter(f"{run} holds no clipline run ledger ({db} is missing)")
    return SqlLedger(make_engine(f"sqlite:///{db.resolve()}"))


def status(
    job: uuid.UUID | None = typer.Argument(None, help="A job id: print that job."),
    batch: uuid.UUID | None = typer.Option(None, "--batch", help="Counts for one batch."),
    run: Path | None = RUN,
    tenant: str = TENANT,
    report: Path | None = typer.Option(
        None, "--report", dir_okay=False, help="With --batch: write the batch's results "
        "manifest to this file, one row per job (CSV for *.csv, else JSON lines), the same "
        "rows the reconciler writes beside the batch's cut-outs."),
) -> None:
    """Print one job (status, attempts, last error, result), or a batch's counts by status with
    its dead letters by reason."""
    if (job is None) == (batch is None):
        raise typer.BadParameter("give a JOB id or --batch ID (one of them)")
    if report is not None and batch is None:
        raise typer.BadParameter("--report needs --batch ID")
    ledger = _ledger(run)
    try:
        if job is not None:
            found = ledger.get(job, tenant=tenant)
            typer.echo(json.dumps({
                "id": str(found.id), "status": found.status.value, "attempts": found.attempts,
                "max_attempts": found.max_attempts, "source": f"{found.bucket}/{found.key}",
                "error": found.last_error_code, "message": found.last_error_message,
                "destination": None if found.output_bucket is None and found.output_key is None
                else {"bucket": found.output_bucket, "key": found.output_key},
                "result": found.result,
            }, indent=2, default=str))
            return
        assert batch is not None
        counts = ledger.batch_counts(batch)
        for state in JobStatus:
            typer.echo(f"{state.value:>10}  {counts[state]}")
        for reason, n in sorted(counts.dead_by_reason.items()):
            typer.echo(f"  dead by {reason}: {n}")
        if run is not None:
            _refused(ledger, batch)
        if report is not None:
            from pipeline.batch_report import write_local

            try:
                written = write_local(report, ledger.batch_jobs(batch))
            except OSError as exc:
                raise UsageError(f"--report {fields.escaped(str(report))}: cannot write it "
                                 f"({exc.strerror or exc})") from exc
            typer.echo(f"report: {written} job(s) written to {fields.escaped(str(report))}")
    finally:
        ledger.close()


def _refused(ledger: Any, batch: uuid.UUID) -> None:
    """An embedded run's refusals (files and folders that are not jobs), as its last run noted
    them in the batch: with them, the counts here are the run summary's."""
    try:
        meta = ledger.get_batch(batch)["meta"] or {}
    except BatchNotFound:
        return
    for reason, n in sorted((meta.get("refused") or {}).items()):
        typer.echo(f"  refused by {reason}: {n} (not jobs)")
    for name in meta.get("refused_names") or []:
        typer.echo(f"    {fields.escaped(str(name))}")


def redrive(
    ids: list[uuid.UUID] | None = typer.Option(None, "--id", help="A dead job to re-drive "
                                                "(repeatable)."),
    reason: str | None = typer.Option(None, "--reason", help="Every dead job with this "
                                      "reason code, e.g. storage_unavailable."),
    batch: uuid.UUID | None = typer.Option(None, "--batch", help="Dead jobs of this batch."),
    run: Path | None = RUN,
    tenant: str = TENANT,
) -> None:
    """Send dead jobs back to the queue with fresh attempts. Selectors combine (AND); at least
    one is required. For an embedded run, run `clipline run` again afterwards."""
    if not ids and reason is None and batch is None:
        raise typer.BadParameter("give --id, --reason or --batch")
    ledger = _ledger(run)
    try:
        if run is not None and not ids:
            # An embedded run re-drives its files' current versions: the jobs of superseded
            # versions (kept in the run's history batches) stay as they ended.
            ids = _current_dead(ledger, tenant, reason, batch)
            if not ids:
                typer.echo("re-driven: 0 job(s)")
                return
            reason = batch = None
        moved = ledger.redrive(tenant=tenant, ids=ids or None, reason=reason, batch_id=batch)
    finally:
        ledger.close()
    typer.echo(f"re-driven: {moved} job(s)")


def _current_dead(ledger: Any, tenant: str, reason: str | None,
                  batch: uuid.UUID | None) -> list[uuid.UUID]:
    """The dead jobs matching the selectors that are not in a run's history batch."""
    found: list[uuid.UUID] = []
    history: dict[uuid.UUID | None, bool] = {None: False}
    after = None
    while True:
        page = ledger.page_jobs(tenant=tenant, batch_id=batch, status=JobStatus.DEAD,
                                reason=reason, after=after, limit=1000)
        for job in page.items:
            if job.batch_id not in history:
                meta = ledger.get_batch(job.batch_id)["meta"] or {}
                history[job.batch_id] = HISTORY_OF in meta
            if not history[job.batch_id]:
                found.append(job.id)
        if (after := page.next_cursor) is None:
            return found
