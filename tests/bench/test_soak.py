"""The memory soak runs as its docs say, at a tiny size, and prints its RSS figures.

A smoke run, as in test_smoke: ``python -m bench.soak`` in a process of its own, three waves of
a few jobs through one real worker process. It must exit 0 and print the RSS at the start, after
every wave, and the drift after warm-up, each a finite number. The drift is a measurement (a
few jobs say nothing about leaks): it is not asserted.
"""

from __future__ import annotations

import math
import re

import pytest

from tests.bench.test_smoke import REDIS_DB, run

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MIB = r"(\d+\.\d) MiB"
PERCENT = r"([+-]\d+\.\d\d)%"


def test_soak_prints_rss_every_wave_and_the_drift() -> None:
    # The smoke test's Redis database for bench.orchestration, whose stack this is: the two
    # modules never run at once.
    out = run("-m", "bench.soak", "--jobs", "60", "--every", "20",
              "--redis-db", str(REDIS_DB["orchestration"]), timeout=60)
    values: list[float] = []
    for done, after in (("0", r" \(idle, before any job\)"), ("20", ""), ("40", ""), ("60", "")):
        found = re.search(rf"^jobs +{done}: pool process {MIB}, main process {MIB}{after}$",
                          out, re.MULTILINE)
        assert found, f"no RSS line after {done} jobs in:\n{out}"
        values += [float(v) for v in found.groups()]
    assert all(v > 0 for v in values), values
    drift = re.search(rf"^drift after warm-up \(20 -> 60 jobs\): pool process {PERCENT} "
                      rf"\({MIB} -> {MIB}\), main process {PERCENT} \(goal < 5%\)$",
                      out, re.MULTILINE)
    assert drift, f"no drift line in:\n{out}"
    assert all(math.isfinite(float(v)) for v in drift.groups())
    assert re.search(r"^60 jobs in [\d.]+ s = [\d,]+ jobs/s \(waves of 20\), one pool process "
                     r"throughout \(pid \d+\)$", out, re.MULTILINE), out
