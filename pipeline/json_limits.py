"""JSON from outside, parsed within limits: a size cap and a nesting cap, checked before parsing.

Python's ``json`` recurses once per level of nesting, and so does any code that walks what it
built: 100 KB of ``[`` is 100,000 levels, a ``RecursionError`` in the parser, or later in
whatever touches the result. ``loads`` refuses such a document before parsing it, with a scan
that does not recurse and runs at C speed (``bytes`` methods, ``array``, ``accumulate``):

1. escaped backslashes and quotes are cut out (``\\"`` is not the end of a string), then every
   byte but quotes and brackets, then the strings (a bracket inside one is data);
2. the innermost pairs (``[]``, ``{}`` with nothing between them) are peeled off in one pass
   (most of a typical document: every object without a nested one);
3. what is left is measured by its running sum of +1 per opening and -1 per closing bracket.
   An opening bracket nobody closes counts too: the parser recurses into it before it notices.

Every refusal is a ``JsonLimitExceeded``, a ``ValueError`` like the parser's own errors, so a
caller that already refuses bad JSON refuses these with it. No import beyond the standard library.
"""

from __future__ import annotations

import json
import re
from array import array
from itertools import accumulate
from typing import Any

MAX_DEPTH = 64  # far above any document Clipline reads (a job body nests 4 levels, an event 6)

_STRING = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'"[]{}')
_ONE_KIND = bytes.maketrans(b"{}", b"[]")  # the depth does not care which kind of bracket
_STEPS = bytes.maketrans(b"[]", b"\x01\xff")  # +1 and -1 as signed bytes


class JsonLimitExceeded(ValueError):
    """The document is larger, or nested deeper, than the caller allows."""


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None) -> Any:
    """``json.loads(data)`` once ``check`` has passed."""
    check(data, max_depth=max_depth, max_bytes=max_bytes)
    return json.loads(data)


def check(data: str | bytes, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None) -> None:
    """Raise ``JsonLimitExceeded`` when ``data`` is over ``max_bytes`` (as UTF-8) or its arrays
    and objects nest deeper than ``max_depth``. Says nothing about whether it is valid JSON."""
    too_large = JsonLimitExceeded(f"the JSON is too large (over {max_bytes} bytes)")
    if max_bytes is not None and len(data) > max_bytes:  # a character is at least a byte
        raise too_large
    raw = _utf8(data)
    if max_bytes is not None and len(raw) > max_bytes:
        raise too_large
    if nesting(raw) > max_depth:
        raise JsonLimitExceeded(f"the JSON is nested too deep (over {max_depth} levels)")


def nesting(raw: bytes) -> int:
    """How deep the arrays and objects of the UTF-8 JSON text ``raw`` nest: 0 for a scalar, 1
    for ``[1, 2]``. Exact for a well-formed document; for a malformed one, at least as deep as
    the parser would go before refusing it."""
    if b"\\" in raw:
        # Left to right, like the parser: a run of backslashes pairs up from its start, and
        # an odd one out escapes what follows it (here, a quote that does not end a string).
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = raw.translate(_ONE_KIND, _NOT_STRUCTURE)
    if b'"' in marks:
        # Most strings hold no bracket: "" in one pass. Dropping two adjacent quotes never
        # changes which brackets are inside a string; the expression takes the rest.
        marks = _STRING.sub(b"", marks.replace(b'""', b""))
    peeled = marks.replace(b"[]", b"")
    depth = 1 if len(peeled) < len(marks) else 0
    if not peeled:
        return depth
    highest = max(accumulate(array("b", peeled.translate(_STEPS))))
    return depth + max(highest, 0)


def _utf8(data: str | bytes) -> bytes:
    """The bytes the scan reads: UTF-8, whatever encoding ``json.loads`` would have detected
    (quotes and brackets are single bytes only in UTF-8)."""
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    encoding = json.detect_encoding(data)
    if encoding in ("utf-8", "utf-8-sig"):
        return data
    return data.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
