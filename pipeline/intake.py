"""Job specs from what a user points at: S3 URLs, the keys under a prefix, a manifest file.

A manifest (``*.csv`` aside, see ``csv_specs``) has one job per line, either an S3 URL or a
JSON object::

    s3://photos/shoes/red.jpg
    s3://photos/shoes/blue.jpg?versionId=3HL4kqtJlcpXroDTDmJ
    {"bucket": "photos", "key": "bags/tote.png", "options": {"crop": true}, "priority": 5}

Blank lines and lines starting with ``#`` are skipped. A line that is not a job raises
``InvalidManifest`` naming its line number; callers insert a manifest in one transaction, so a
bad line anywhere leaves nothing half-submitted. Every field is held to ``pipeline.fields``
(no control characters, the ledger's lengths, priorities from -100 to 100).

A manifest is UTF-8 text (``manifest_lines`` decodes it): a byte-order mark at the start is
skipped, lines end with LF or CRLF, and a line that is not UTF-8 is refused by its number.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import fields as dataclass_fields
from pathlib import PurePosixPath
from typing import Any, Protocol

from pipeline import fields, json_limits
from pipeline.errors import InvalidManifest, InvalidOptions
from pipeline.fields import shown
from pipeline.jobs import Job, JobSpec, JobStatus
from pipeline.models import DEFAULT_MODEL
from pipeline.options import OutputOptions
from pipeline.paging import Page
from pipeline.run_files import IMAGE_SUFFIXES

JSON_FIELDS = {"bucket", "key", "version", "options", "priority", "idempotency_key", "model"}
VERSION_PARAMETER = "?versionId="
MAX_LINE_DEPTH = 8  # a JSON line nests options one level deep
BOM = "\ufeff"
ASCII_SPACE = " \t\r\n\f\v"
"""What may surround a manifest line without being part of it. ASCII only: a no-break space or
U+2028 at the end of a key is part of the key, as S3 sees it."""
OPTION_NAMES = {f.name for f in dataclass_fields(OutputOptions)}


def parse_s3_url(text: str) -> tuple[str, str, str | None]:
    """``s3://bucket/key[?versionId=v]`` → (bucket, key, version), read as S3 reads keys.

    The key is everything after the bucket's slash, literally: ``?``, ``#``, ``%``, ``+``,
    spaces and any Unicode are part of it, and nothing is percent-decoded (as the AWS CLI reads
    ``s3://`` paths). The one parameter is a trailing ``?versionId=VALUE``: the last
    ``?versionId=`` of the line, followed by a non-empty value without ``?``, is the version. A
    key that itself ends so cannot be written as a URL: use a JSON or CSV line. Leading and
    trailing whitespace around the URL is not part of the key (same reason, same remedy).
    Raises ``ValueError`` (``InvalidField`` for a bucket, key or version the ledger cannot hold).
    """
    text = text.strip(ASCII_SPACE)
    if not text.startswith("s3://"):
        raise ValueError(f"not an S3 object URL (s3://bucket/key): {shown(text)}")
    bucket, slash, rest = text[5:].partition("/")
    key, version = rest, None
    cut = rest.rfind(VERSION_PARAMETER)
    if cut >= 0 and "?" not in rest[cut + len(VERSION_PARAMETER):]:
        key, version = rest[:cut], rest[cut + len(VERSION_PARAMETER):]
        if not version:
            raise ValueError(f"an empty versionId in {shown(text)}")
        fields.VERSION.check(version)
    if not bucket or not slash or not key or key.endswith("/"):
        raise ValueError(f"not an S3 object URL (s3://bucket/key): {shown(text)}")
    return fields.BUCKET.check(bucket), fields.KEY.check(key), version


def is_image_key(key: str) -> bool:
    """Whether ``key`` is named like a picture (``IMAGE_SUFFIXES``, any case)."""
    return PurePosixPath(key).suffix.lower() in IMAGE_SUFFIXES


def url_spec(text: str, defaults: Mapping[str, Any]) -> JobSpec:
    """The job of one S3 URL (``parse_s3_url``) with ``defaults`` (options, priority, model)."""
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
        line = raw.strip(ASCII_SPACE)
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


def manifest_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The text lines of a manifest read as bytes (a binary file, ``io.BytesIO``), without
    their line ends. Only LF and CRLF end a line: other Unicode line separators (U+2028, ...)
    may be part of a key. Raises ``InvalidManifest`` for a line that is not UTF-8."""
    for number, chunk in enumerate(chunks, start=1):
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidManifest(f"line {number}: not UTF-8 text ({exc.reason} at byte "
                                  f"{exc.start})") from exc
        if number == 1:
            line = line.removeprefix(BOM)
        yield line.removesuffix("\n").removesuffix("\r")


def csv_specs(lines: Iterable[str], defaults: Mapping[str, Any]) -> Iterator[JobSpec]:
    """A spec per row of a CSV manifest. The header names the columns: ``bucket`` and ``key``,
    optionally ``version``, ``priority``, ``idempotency_key``, ``model``, and any output
    option (``format``, ``crop``, ...). An empty cell takes the default.

    Whitespace after a line's last cell is not data, as in the other formats (a cell that
    must end with spaces is quoted: ``"a.jpg "``); a line of whitespace is a blank line. A
    quoted cell that runs on to the next line (an unbalanced quote, say) holds a line end,
    which no field may: that row is refused by its line number, never glued to the next."""
    reader = csv.DictReader(line.rstrip(ASCII_SPACE) + "\n" for line in lines)
    columns = set(reader.fieldnames or ())
    unknown = columns - (JSON_FIELDS - {"options"}) - OPTION_NAMES
    if not {"bucket", "key"} <= columns or unknown:
        raise InvalidManifest(
            "line 1: a CSV manifest's header needs bucket and key"
            + (f"; unknown column(s) {sorted(unknown)}" if unknown else ""))
    last = reader.line_num
    for row in reader:
        # A row that ran over several lines (a quoted line end) is named by all of them.
        first, last = last + 1, reader.line_num
        where = f"lines {first}-{last}" if first < last and "\n" in "".join(
            v for v in row.values() if isinstance(v, str)) else f"line {last}"
        try:
            cells = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
            if None in row:
                raise ValueError("more cells than the header has columns")
            item: dict[str, Any] = {k: v for k, v in cells.items() if k not in OPTION_NAMES}
            item["options"] = {k: v for k, v in cells.items() if k in OPTION_NAMES}
            if "priority" in item:
                item["priority"] = int(item["priority"], 10)
            spec = _item_spec(item, defaults)
            OutputOptions.parse(spec.options)
        except (ValueError, TypeError, InvalidOptions) as exc:
            raise InvalidManifest(f"{where}: {exc}") from exc
        yield spec


def specs_of(name: str, lines: Iterable[str], defaults: Mapping[str, Any]) -> Iterator[JobSpec]:
    """The specs of a manifest named ``name``: CSV for ``*.csv``, else URL and JSON lines."""
    parse = csv_specs if name.lower().endswith(".csv") else manifest_specs
    return parse(lines, defaults)


def _json_spec(line: str, defaults: Mapping[str, Any]) -> JobSpec:
    # One job is a few fields; JsonLimitExceeded (a ValueError) refuses the line by number.
    item = json_limits.loads(line, max_bytes=64 * 1024, max_depth=MAX_LINE_DEPTH)
    if not isinstance(item, dict):
        raise ValueError("a JSON line must be an object")
    return _item_spec(item, defaults)


def _item_spec(item: Mapping[str, Any], defaults: Mapping[str, Any]) -> JobSpec:
    unknown = set(item) - JSON_FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) [{', '.join(sorted(map(shown, unknown)))}]; "
                         f"known: {sorted(JSON_FIELDS)}")
    for name in ("bucket", "key"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise ValueError(f"{name!r} must be a non-empty string")
    options = item.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError("'options' must be an object")
    priority = item.get("priority", defaults.get("priority", 0))
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ValueError("'priority' must be an integer")
    return JobSpec(
        bucket=fields.BUCKET.check(item["bucket"]), key=fields.KEY.check(item["key"]),
        version=_optional(item.get("version"), fields.VERSION),
        options={**defaults.get("options", {}), **options},
        model=fields.MODEL.check(item.get("model", defaults.get("model", DEFAULT_MODEL))),
        priority=fields.PRIORITY.check(priority),
        idempotency_key=_optional(item.get("idempotency_key"), fields.IDEMPOTENCY_KEY),
    )


def _optional(value: Any, spec: fields.TextField) -> str | None:
    return None if value is None else spec.check(value)


class JobListing(Protocol):
    def page_jobs(self, *, batch_id: uuid.UUID | None = None,
                  status: JobStatus | None = None, after: str | None = None,
                  limit: int = 100) -> Page: ...


def queued_pages(ledger: JobListing, batch_id: uuid.UUID,
                 page: int = 1000) -> Iterator[list[Job]]:
    """The batch's queued jobs a page at a time, by the ledger's cursor: what to publish once
    a batch is recorded."""
    after = None
    while True:
        found = ledger.page_jobs(batch_id=batch_id, status=JobStatus.QUEUED, after=after,
                                 limit=page)
        if found.items:
            yield found.items
        if found.next_cursor is None:
            return
        after = found.next_cursor
