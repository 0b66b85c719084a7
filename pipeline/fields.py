"""What the ledger can hold: the one table of limits for text and numbers that come from outside.

Every door (the API's bodies, query strings and headers, manifests in all three formats, S3
events and the webhook, the CLI, file names in an embedded run) checks what it receives against
the fields here, so nothing the database would refuse, or would store and later choke on,
reaches it. Pure: no I/O.

A text field is refused when it is

* not encodable as UTF-8 (a lone surrogate, e.g. JSON's ``"\\ud800"`` or a non-UTF-8 file name
  decoded with ``surrogateescape``): neither PostgreSQL nor SQLite can store it;
* carrying a control character (Unicode category Cc: U+0000-U+001F, U+007F-U+009F).
  PostgreSQL refuses NUL in ``text`` and ``jsonb`` outright; the others split manifest lines,
  forge log lines and drive terminals, and no real object key or name needs them;
* longer than its limit. Limits are the column's (``pipeline.adapters.ledger.schema``), or tighter
  where the outside world is: an S3 key is at most 1,024 bytes of UTF-8, a bucket name 3-63
  characters of ``a-z 0-9 . -`` (AWS's "Bucket naming rules" and "Naming Amazon S3 objects").

A refusal raises :class:`pipeline.errors.InvalidField`, which names the field and says what is
wrong without echoing the bad characters raw (they are shown escaped, as Python's ``repr``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import InvalidField

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class TextField:
    """A text field and its limits. ``max_bytes`` counts UTF-8 bytes (S3 measures keys so);
    ``pattern``, when set, must match the whole value; ``what`` says in words what it is."""

    name: str
    max_chars: int | None = None
    max_bytes: int | None = None
    min_chars: int = 1
    pattern: re.Pattern[str] | None = None
    what: str = "text"
    reserved_prefix: str | None = None  # a prefix only Clipline itself may write

    def check(self, value: object) -> str:
        """``value`` if it is a storable string within the limits; else ``InvalidField``."""
        return check_text(value, self)


@dataclass(frozen=True, slots=True)
class IntField:
    """An integer field and its inclusive range."""

    name: str
    low: int
    high: int

    def check(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidField(self.name, f"must be an integer, got {type(value).__name__}")
        if not self.low <= value <= self.high:
            raise InvalidField(self.name, f"must be between {self.low} and {self.high}, "
                               f"got {value}")
        return value


BUCKET = TextField(
    "bucket", max_chars=63, min_chars=3,
    pattern=re.compile(r"[a-z0-9][a-z0-9.\-]*[a-z0-9]"),
    what="an S3 bucket name (3-63 characters: a-z 0-9 . -, starting and ending with a letter "
    "or digit)")
KEY = TextField("key", max_bytes=1024, what="an S3 object key (at most 1,024 bytes of UTF-8)")
PREFIX = TextField("prefix", max_bytes=1024, min_chars=0, what="an S3 key prefix")
VERSION = TextField("version", max_chars=1024, what="an S3 version id or a quoted ETag")
# jobs.idempotency_key; "h:" starts the keys the ledger derives (pipeline.jobs.dedupe_key_of)
IDEMPOTENCY_KEY = TextField("idempotency_key", max_chars=255, reserved_prefix="h:")
MODEL = TextField("model", max_chars=64, pattern=re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]*"),
                  what="a model name (a-z A-Z 0-9 . _ -)")  # jobs.model
TENANT = TextField("tenant", max_chars=64, pattern=re.compile(r"[a-z0-9][a-z0-9_\-]*"),
                   what="a tenant id (a-z 0-9 _ -, starting with a letter or digit)")
LABEL = TextField("label", max_chars=200)  # free text a person gives: labels, names
NAME = TextField("name", max_chars=200)
REASON = TextField("reason", max_chars=64)  # jobs.last_error_code
SOURCE_RULE = TextField("allow", max_chars=1024 + 64, what="a bucket/prefix rule")
PRIORITY = IntField("priority", -100, 100)

FOLDER = TextField("folder", max_bytes=4096, what="a folder path")  # an embedded run's SRC/DST


def check_text(value: object, spec: TextField) -> str:
    """``value`` unchanged if ``spec`` allows it; ``InvalidField`` naming the field otherwise."""
    if not isinstance(value, str):
        raise InvalidField(spec.name, f"must be a string, got {type(value).__name__}")
    problem = text_problem(value, spec)
    if problem:
        raise InvalidField(spec.name, problem)
    return value


def text_problem(value: str, spec: TextField) -> str | None:
    """What is wrong with ``value`` as ``spec``, in words, or None."""
    if len(value) < spec.min_chars:
        return "must not be empty" if spec.min_chars == 1 else (
            f"must be at least {spec.min_chars} characters")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        return f"is not valid UTF-8 text (at character {exc.start})"
    found = _CONTROL.search(value)
    if found:
        return (f"contains the control character U+{ord(found.group()):04X} at character "
                f"{found.start()}")
    if spec.max_chars is not None and len(value) > spec.max_chars:
        return f"is {len(value)} characters long, over the limit of {spec.max_chars}"
    if spec.max_bytes is not None and size > spec.max_bytes:
        return f"is {size} bytes of UTF-8, over the limit of {spec.max_bytes}"
    if spec.pattern is not None and not spec.pattern.fullmatch(value):
        return f"{shown(value)} is not {spec.what}"
    if spec.reserved_prefix and value.startswith(spec.reserved_prefix):
        return f"must not start with {spec.reserved_prefix!r} (kept for keys Clipline derives)"
    return None


def escaped(value: str, limit: int = 1000) -> str:
    """``value`` with its control characters and lone surrogates written as ``\\xNN`` or
    ``\\uNNNN`` (everything else kept, accents included), cut to ``limit`` characters: text
    that may echo client data becomes safe to store, log and print."""
    out = _UNSAFE.sub(_escape, value[:limit])
    return out if len(value) <= limit else out + "…"


def _escape(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(value: str, limit: int = 80) -> str:
    """``value`` fit for a message, a log line or a terminal: escaped as Python's ``repr`` (so a
    control character or a surrogate shows as ``\\x00`` or ``\\udce9``), cut to ``limit``."""
    text = repr(value[:limit])
    return text if len(value) <= limit else text[:-1] + "…'"
