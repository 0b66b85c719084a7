"""``python -m bench.job_path`` at a tiny size prints every part of a job's path and the ratios.

A smoke run, not a measurement (see ``test_smoke``): it must exit 0, time each part, and print
finite, positive ratios of the ledger's statements against the same SQL through raw psycopg.
"""

from __future__ import annotations

import math
import re

import pytest

from tests.bench.test_smoke import REDIS_DB, assert_prints, run

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PART = r" +[\d.]+ +[\d.]+$"


@pytest.mark.timeout(180)
def test_job_path_prints_each_part_and_the_ratios() -> None:
    # The orchestration smoke run's Redis database: the two never run at once (no xdist).
    out = run("-m", "bench.job_path", "--jobs", "20", "--redis-db", str(REDIS_DB["orchestration"]),
              timeout=150)
    assert_prints(out, r"20 jobs per part", rf"^  whole \(JobRunner.run\){PART}",
                  rf"^  image work \(process_job\){PART}", rf"^  claim \(raw psycopg\){PART}",
                  rf"^  heartbeat registration{PART}", r"^share of the whole's wall time: ")
    for verb in ("claim", "complete"):
        found = re.search(rf"^ratio {verb}, SqlLedger / raw psycopg: CPU (\S+), wall (\S+)$",
                          out, re.MULTILINE)
        assert found, out
        assert all(math.isfinite(float(x)) and float(x) > 0 for x in found.groups()), out
