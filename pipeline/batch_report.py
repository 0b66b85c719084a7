"""A batch's results manifest: what happened to every image, once the batch has finished.

A batch is finished when every one of its jobs is terminal (succeeded, dead or cancelled) and
its expansion is done (state ``ready``, or no state: a ``clipline submit`` batch). Then the
reconciler writes the report beside the batch's cut-outs, in the service's output bucket::

    <output prefix>/<tenant>/batches/<batch id>/report.jsonl   one JSON object per job
    <output prefix>/<tenant>/batches/<batch id>/report.csv     the same rows, one per line

and records where (``batches.meta["report"]``, shown by ``GET /v1/batches/{id}``) and when
(``batches.reported_at``). A redrive clears ``reported_at``: when the batch finishes again the
report is written again, at the same keys, so it always describes the batch's last finish
(the keys are deterministic, like the cut-outs'). ``clipline status --batch ID --report FILE``
writes the same rows to a local file (CSV for ``*.csv``, else JSON lines).

Columns (``COLUMNS``): the job id and status; the source bucket, key and version; the reason
code and message of a dead job; the output bucket and key of a succeeded one; the subject's
bbox (x, y, w, h in source pixels), foreground fraction and uncertainty; the model; attempts;
when the job was created and finished; and the time of each stage in milliseconds. In CSV, a
list or mapping (bbox, timings) is its JSON text and a missing value an empty cell.

The report is built in memory (about 400 bytes a job in each format): a batch of a million
jobs needs some 800 MB while it is written. Pure apart from the ports it is given.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from pipeline import logs
from pipeline.jobs import Job
from pipeline.output_keys import tenant_area

COLUMNS = (
    "job_id", "status", "source_bucket", "source_key", "source_version", "reason", "message",
    "output_bucket", "output_key", "bbox", "foreground_fraction", "uncertainty", "model",
    "attempts", "created_at", "finished_at", "timings_ms",
)
log = logs.get(__name__)


def report_row(job: Job) -> dict[str, Any]:
    """The report's row of ``job``: every column of ``COLUMNS``, None where it has no value.

    The output is where the cut-out went, or, for a job that has none yet (queued, dead), the
    destination named at submit; None for a job that kept the default key and has no cut-out."""
    result = job.result or {}
    output = result.get("output") or {"bucket": job.output_bucket, "key": job.output_key}
    return {
        "job_id": str(job.id), "status": job.status.value, "source_bucket": job.bucket,
        "source_key": job.key, "source_version": job.version,
        "reason": job.last_error_code, "message": job.last_error_message,
        "output_bucket": output.get("bucket"), "output_key": output.get("key"),
        "bbox": result.get("bbox"), "foreground_fraction": result.get("foreground_fraction"),
        "uncertainty": result.get("uncertainty"), "model": job.model,
        "attempts": job.attempts, "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "timings_ms": result.get("timings_ms"),
    }


def jsonl(jobs: Iterable[Job]) -> bytes:
    """JSON lines, one job a line, UTF-8 (keys and messages kept as they are)."""
    return b"".join(json.dumps(report_row(j), ensure_ascii=False).encode() + b"\n"
                    for j in jobs)


def csv_bytes(jobs: Iterable[Job]) -> bytes:
    """CSV with a header of ``COLUMNS``, UTF-8, lines ending CRLF (RFC 4180)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for job in jobs:
        writer.writerow(_cell(v) for v in report_row(job).values())
    return out.getvalue().encode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def render(path_name: str, jobs: Iterable[Job]) -> bytes:
    """The report as the file ``path_name`` wants it: CSV for ``*.csv``, else JSON lines."""
    return csv_bytes(jobs) if path_name.lower().endswith(".csv") else jsonl(jobs)


def report_keys(output_prefix: str, tenant_id: str, batch_id: uuid.UUID) -> dict[str, str]:
    """Where a batch's report goes in the output bucket: ``{"jsonl": key, "csv": key}``."""
    base = f"{tenant_area(output_prefix, tenant_id)}/batches/{batch_id}/report"
    return {"jsonl": f"{base}.jsonl", "csv": f"{base}.csv"}


class ReportLedger(Protocol):
    def batches_to_report(self, limit: int) -> list[tuple[uuid.UUID, str]]: ...

    def batch_jobs(self, batch_id: uuid.UUID) -> Iterator[Job]: ...

    def mark_reported(self, batch_id: uuid.UUID, report: Mapping[str, Any]) -> bool: ...


class ReportStore(Protocol):
    def put(self, bucket: str, key: str, data: bytes, *, content_type: str,
            metadata: Mapping[str, str] | None = None) -> None: ...


def write_report(ledger: ReportLedger, store: ReportStore, batch_id: uuid.UUID, tenant_id: str,
                 *, bucket: str, output_prefix: str = "cutouts") -> dict[str, Any]:
    """Write the batch's report in both formats and record it; returns what was recorded.
    Storage errors propagate (the next pass tries again: the batch is still due)."""
    keys = report_keys(output_prefix, tenant_id, batch_id)
    jobs = list(ledger.batch_jobs(batch_id))
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status.value] = counts.get(job.status.value, 0) + 1
    provenance = {"batch-id": str(batch_id)}
    store.put(bucket, keys["jsonl"], jsonl(jobs), content_type="application/x-ndjson",
              metadata=provenance)
    store.put(bucket, keys["csv"], csv_bytes(jobs), content_type="text/csv; charset=utf-8",
              metadata=provenance)
    report = {"bucket": bucket, **keys, "jobs": len(jobs), "counts": counts}
    ledger.mark_reported(batch_id, report)
    log.info("batch_reported", batch_id=str(batch_id), tenant=tenant_id, jobs=len(jobs))
    return report


def write_due_reports(ledger: ReportLedger, store: ReportStore, *, bucket: str,
                      output_prefix: str = "cutouts", limit: int = 10) -> int:
    """Write the report of every finished batch that has none for its last finish (at most
    ``limit`` a pass); returns how many were written."""
    done = 0
    for batch_id, tenant_id in ledger.batches_to_report(limit):
        write_report(ledger, store, batch_id, tenant_id, bucket=bucket,
                     output_prefix=output_prefix)
        done += 1
    return done


def write_local(path: Path, jobs: Iterable[Job]) -> int:
    """``clipline status --batch ID --report FILE``: the same rows, to ``path``; returns how
    many jobs it holds."""
    listed = list(jobs)
    path.write_bytes(render(path.name, listed))
    return len(listed)
