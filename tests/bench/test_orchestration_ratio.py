"""``python -m bench.orchestration`` at a tiny size prints both rates and their ratio.

A smoke run, not a measurement (see ``test_smoke``): the benchmark's one command, 50 jobs a run,
both kinds of run in each of its two rounds. It must exit 0 and print the orchestration rate,
the bare Celery rate and a finite, positive ratio of the two.
"""

from __future__ import annotations

import math
import re

import pytest

from tests.bench.test_smoke import REDIS_DB, assert_prints, run

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

RATE = r"[\d.]+ s = [\d,]+ jobs/s = [\d,]+ jobs/s per worker process$"


@pytest.mark.timeout(240)
def test_orchestration_prints_both_rates_and_their_ratio() -> None:
    # The orchestration smoke run's Redis database: the two never run at once (no xdist).
    out = run("-m", "bench.orchestration", "--jobs", "50", "--processes", "1", "--rounds", "2",
              "--redis-db", str(REDIS_DB["orchestration"]), timeout=200)
    assert_prints(out, r"succeeded 50, worker processes: 1 ",
                  rf"^first claim -> last completion: {RATE}",
                  rf"^bare Celery no-op, first task -> last task: {RATE}",
                  r"^  round 1 orchestration +[\d.]+ s = ", r"^  round 1 bare Celery +[\d.]+ s = ",
                  r"^  round 2 bare Celery +[\d.]+ s = ", r"^  round 2 orchestration +[\d.]+ s = ")
    found = re.search(r"^ratio orchestration / bare Celery: (\S+) ", out, re.MULTILINE)
    assert found, out
    ratio = float(found.group(1))
    assert math.isfinite(ratio) and ratio > 0, out
