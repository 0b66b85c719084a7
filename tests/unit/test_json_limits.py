"""``pipeline.json_limits``: the pre-scan measures nesting exactly, without recursing, and refuses
what is too deep or too large before ``json`` parses it."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.json_limits import MAX_DEPTH, JsonLimitExceeded, check, loads, nesting

# Text that tries to fool the scan: brackets, quotes and backslashes inside strings.
TRICKY = st.text(alphabet=st.sampled_from('[]{}"\\/ a\u00e9\u2028\ud83d\ude00'), max_size=8)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
    max_leaves=40,
)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    return 0


@given(VALUES, st.booleans(), st.sampled_from([None, 2]))
def test_the_scan_measures_any_document_exactly(value: Any, ascii_only: bool,
                                                indent: int | None) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    assert nesting(text.encode("utf-8", "surrogatepass")) == depth_of(value)


@pytest.mark.parametrize(("text", "depth"), [
    ("1", 0), ('"[[["', 0), ("[]", 1), ("{}", 1), ('{"a": [1, {"b": []}]}', 4),
    ('["\\\\", ["\\"]"]]', 2), ('["\\\\\\"[", [[]]]', 3), ('[{"k": "}}}]]]"}, [[[]]]]', 4),
])
def test_strings_and_escapes_are_not_structure(text: str, depth: int) -> None:
    assert json.loads(text) is not None or text == "null"
    assert nesting(text.encode()) == depth


@pytest.mark.parametrize(("text", "depth"), [
    ("[" * 100, 100), ("[" * 100 + "]", 100), ("[1, [2, " + "{" * 98, 100),
    ("[[]]" + "[" * 100, 100), ('"' + "[" * 100, 0),  # inside a string that never ends
])
def test_unclosed_brackets_count_as_deep_as_the_parser_would_go(text: str, depth: int) -> None:
    assert nesting(text.encode()) >= depth


def test_exactly_the_limit_passes_and_one_more_is_refused() -> None:
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) == json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    with pytest.raises(JsonLimitExceeded, match=r"^the JSON is nested too deep \(over 64"):
        loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(JsonLimitExceeded, match="over 3 levels"):
        loads('{"a": {"b": {"c": {}}}}', max_depth=3)


def test_fifty_thousand_levels_are_refused_fast_and_without_recursing() -> None:
    deep = b"[" * 50_000 + b"]" * 50_000
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100)  # the scan must not need the stack the parser would
    try:
        started = time.perf_counter()
        with pytest.raises(JsonLimitExceeded, match="nested too deep"):
            check(deep)
        assert time.perf_counter() - started < 0.5
    finally:
        sys.setrecursionlimit(limit)


def test_a_document_over_max_bytes_is_refused_as_text_and_as_bytes() -> None:
    body = json.dumps({"key": "é" * 60}, ensure_ascii=False)  # 71 characters, 131 bytes
    assert loads(body, max_bytes=131) == {"key": "é" * 60}
    for data in (body, body.encode()):
        with pytest.raises(JsonLimitExceeded, match=r"too large \(over 100 bytes\)"):
            loads(data, max_bytes=100)
    with pytest.raises(JsonLimitExceeded):
        loads(body, max_bytes=130)  # under the limit in characters, over it in bytes


def test_utf16_is_scanned_as_the_parser_reads_it() -> None:
    # In UTF-16, U+225B is the bytes 5B 22: a bracket and a quote to a naive byte scan.
    value = [["\u225b\u225b"], [[[]]]]
    assert nesting(json.dumps(value).encode()) == 4
    assert loads(json.dumps(value, ensure_ascii=False).encode("utf-16")) == value
    with pytest.raises(JsonLimitExceeded):
        loads(json.dumps(value, ensure_ascii=False).encode("utf-16-le"), max_depth=3)


def test_refusals_are_value_errors_like_the_parsers_own() -> None:
    assert issubclass(JsonLimitExceeded, ValueError)
    with pytest.raises(json.JSONDecodeError):
        loads("[1, 2")  # malformed but shallow: the parser's own error
