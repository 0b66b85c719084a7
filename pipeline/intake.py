"""Job specs from what a user points at: S3 URLs, the keys under a prefix, a manifest file.

A manifest (``*.csv`` aside, see ``csv_specs``) has one job per line, either an S3 URL or a
JSON object::

    s3://photos/shoes/red.jpg
    s3://photos/shoes/blue.jpg?versionId=3HL4kqtJlcpXroDTDmJ
    {"bucket": "photos", "key": "bags/tote.png", "options": {"crop": true}, "priority": 5}

Blank lines and lines starting with ``#`` are skipped. A line that is not a job raises
``InvalidManifest`` naming its line number; callers insert a manifest in one transaction, so a
bad line anywhere leaves nothing half-submitted.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import fields
from pathlib import PurePosixPath
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from pipeline.embedded import IMAGE_SUFFIXES
from pipeline.errors import InvalidManifest, InvalidOptions
from pipeline.jobs import Job, JobSpec, JobStatus
from pipeline.options import OutputOptions

JSON_FIELDS = {"bucket", "key", "version", "options", "priority", "idempotency_key", "model"}
OPTION_NAMES = {f.name for f in fields(OutputOptions)}


def parse_s3_url(text: str) -> tuple[str, str, str | None]:
    """``s3://bucket/key[?versionId=v]`` → (bucket, key, version)."""
    text = text.strip()
    if text.startswith("s3://") and "?" not in text:
        # The common manifest line, split by hand: urlsplit costs more than the rest of the
        # line's intake together, and would take a '#' in a key for a fragment.
        bucket, _, key = text[5:].partition("/")
        if not bucket or not key or key.endswith("/"):
            raise ValueError(f"not an S3 object URL (s3://bucket/key): {text!r}")
        return bucket, key, None
    parts = urlsplit(text)
    key = parts.path.lstrip("/")
    if parts.scheme != "s3" or not parts.netloc or not key or key.endswith("/"):
        raise ValueError(f"not an S3 object URL (s3://bucket/key): {text.strip()!r}")
    version = parse_qs(parts.query).get("versionId", [None])[0]
    return parts.netloc, key, version


def is_image_key(key: str) -> bool:
    return PurePosixPath(key).suffix.lower() in IMAGE_SUFFIXES


def url_spec(text: str, defaults: Mapping[str, Any]) -> JobSpec:
    bucket, key, version = parse_s3_url(text)
    return JobSpec(bucket=bucket, key=key, version=version, **defaults)


def prefix_specs(
    bucket: str, keys: Iterable[str], defaults: Mapping[str, Any]
) -> Iterator[JobSpec]:
    """A spec per image key (by extension; folders and other files are passed over)."""
    for key in keys:
        if is_image_key(key):
            yield JobSpec(bucket=bucket, key=key, **defaults)


def manifest_specs(lines: Iterable[str], defaults: Mapping[str, Any]) -> Iterator[JobSpec]:
    """A spec per manifest line; ``defaults`` (options, priority, model) apply where a JSON line
    does not say otherwise. A JSON line's options are checked here, so a bad one stops the
    manifest; the defaults are the caller's to check, once."""
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            json_line = line.startswith(("{", "["))
            spec = _json_spec(line, defaults) if json_line else url_spec(line, defaults)
            if json_line:  # a URL line takes the defaults, which the caller has checked
                OutputOptions.parse(spec.options)
        except (ValueError, TypeError, InvalidOptions) as exc:
            raise InvalidManifest(f"line {number}: {exc}") from exc
        yield spec


def csv_specs(lines: Iterable[str], defaults: Mapping[str, Any]) -> Iterator[JobSpec]:
    """A spec per row of a CSV manifest. The header names the columns: ``bucket`` and ``key``,
    optionally ``version``, ``priority``, ``idempotency_key``, ``model``, and any output
    option (``format``, ``crop``, ...). An empty cell takes the default."""
    reader = csv.DictReader(lines)
    columns = set(reader.fieldnames or ())
    unknown = columns - (JSON_FIELDS - {"options"}) - OPTION_NAMES
    if not {"bucket", "key"} <= columns or unknown:
        raise InvalidManifest(
            "line 1: a CSV manifest's header needs bucket and key"
            + (f"; unknown column(s) {sorted(unknown)}" if unknown else ""))
    for row in reader:
        number = reader.line_num
        try:
            cells = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
            if None in row:
                raise ValueError("more cells than the header has columns")
            item: dict[str, Any] = {k: v for k, v in cells.items() if k not in OPTION_NAMES}
            item["options"] = {k: v for k, v in cells.items() if k in OPTION_NAMES}
            if "priority" in item:
                item["priority"] = int(item["priority"])
            spec = _item_spec(item, defaults)
            OutputOptions.parse(spec.options)
        except (ValueError, TypeError, InvalidOptions) as exc:
            raise InvalidManifest(f"line {number}: {exc}") from exc
        yield spec


def specs_of(name: str, lines: Iterable[str], defaults: Mapping[str, Any]) -> Iterator[JobSpec]:
    """The specs of a manifest named ``name``: CSV for ``*.csv``, else URL and JSON lines."""
    parse = csv_specs if name.lower().endswith(".csv") else manifest_specs
    return parse(lines, defaults)


def _json_spec(line: str, defaults: Mapping[str, Any]) -> JobSpec:
    item = json.loads(line)
    if not isinstance(item, dict):
        raise ValueError("a JSON line must be an object")
    return _item_spec(item, defaults)


def _item_spec(item: Mapping[str, Any], defaults: Mapping[str, Any]) -> JobSpec:
    unknown = set(item) - JSON_FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; known: {sorted(JSON_FIELDS)}")
    for name in ("bucket", "key"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise ValueError(f"{name!r} must be a non-empty string")
    options = {**defaults.get("options", {}), **(item.get("options") or {})}
    priority = item.get("priority", defaults.get("priority", 0))
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ValueError("'priority' must be an integer")
    return JobSpec(
        bucket=item["bucket"], key=item["key"], version=item.get("version"), options=options,
        model=item.get("model", defaults.get("model", "u2netp")), priority=priority,
        idempotency_key=item.get("idempotency_key"),
    )


class JobListing(Protocol):
    def list_jobs(self, *, batch_id: uuid.UUID | None = None,
                  status: JobStatus | None = None, after: uuid.UUID | None = None,
                  limit: int = 100) -> list[Job]: ...


def queued_pages(ledger: JobListing, batch_id: uuid.UUID,
                 page: int = 1000) -> Iterator[list[Job]]:
    """The batch's queued jobs a page at a time, by id cursor: what to publish once a batch is
    recorded."""
    after = None
    while found := ledger.list_jobs(batch_id=batch_id, status=JobStatus.QUEUED, after=after,
                                    limit=page):
        yield found
        after = found[-1].id
