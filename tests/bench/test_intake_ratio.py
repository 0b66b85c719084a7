"""The bulk-submit benchmarks set against raw COPY: both rates and their ratio are printed.

``bench/ledger.py`` and ``bench.intake`` each COPY the same rows into an unindexed twin of
``jobs`` in the same run (issue 16). A smoke run at a tiny size, as in test_smoke: the command
the docs give, in a process of its own, must exit 0 and print each figure as a finite, positive
number. The figures themselves are measurements, not asserted.
"""

from __future__ import annotations

import math
import re

import pytest

from tests.bench.test_smoke import REDIS_DB, assert_prints, run
from tests.distkit import PG_SERVER

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

NUMBER = r"([\d,]+(?:\.\d+)?)"


def figures(out: str, pattern: str) -> list[float]:
    """The numbers ``pattern``'s groups catch in ``out``; each must be finite and above 0."""
    found = re.search(pattern, out, re.MULTILINE)
    assert found, f"no line matches {pattern!r} in:\n{out}"
    values = [float(group.replace(",", "")) for group in found.groups()]
    assert all(math.isfinite(v) and v > 0 for v in values), (pattern, values)
    return values


def assert_ratio_lines(out: str, rows: int) -> None:
    count = f"{rows:,}"
    submit = figures(out, rf"^bulk submit: +{count} (?:jobs|lines) in +{NUMBER} s = +{NUMBER} "
                          r"(?:jobs|lines)/s")
    raw = figures(out, rf"^raw COPY: +{count} rows in +{NUMBER} s = +{NUMBER} rows/s "
                       rf"\(unindexed twin of jobs; rows written in Python alone: {NUMBER} s\)$")
    (ratio,) = figures(out, rf"^ratio bulk submit / raw COPY: {NUMBER} \(goal ≥ 0\.33 at "
                            r"1,000,000\)$")
    # Printed rounded: the ratio is the rates' quotient to within their rounding.
    assert ratio == pytest.approx(submit[1] / raw[1], abs=0.002, rel=0.01)


def test_ledger_prints_both_rates_and_the_ratio() -> None:
    out = run("bench/ledger.py", "--server", PG_SERVER, "--jobs", "2000", "--work-jobs", "100",
              "--workers", "1", "--claim-batch", "10", timeout=60)
    assert_ratio_lines(out, 2000)


def test_intake_prints_both_rates_and_the_ratio() -> None:
    # The smoke test's Redis database for bench.intake: the two modules never run at once.
    out = run("-m", "bench.intake", "--lines", "1000", "--until", "queued",
              "--redis-db", str(REDIS_DB["intake"]), timeout=60)
    assert_ratio_lines(out, 1000)
    assert_prints(out, r"first line's stored job matches the raw row: yes\)$")
