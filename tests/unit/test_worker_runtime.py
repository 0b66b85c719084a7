"""``workers.runtime``: each worker process builds its clients once, whatever the pool.

Under ``--pool threads`` the first tasks arrive together in one process and no
``worker_process_init`` has warmed anything: they must share one runner (one model session, one
ledger pool, one set of circuit breakers), not build one each.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from workers import runtime


def test_concurrent_first_tasks_build_one_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []

    def slow_build(*_: Any, **__: Any) -> object:
        time.sleep(0.05)  # a model session takes a while: every thread is waiting meanwhile
        made = object()
        built.append(made)
        return made

    monkeypatch.setattr(runtime.bootstrap, "job_runner", slow_build)
    monkeypatch.setattr(runtime, "_state", None)
    start = threading.Barrier(8)
    got: list[object] = []

    def first_task() -> None:
        start.wait()
        got.append(runtime.runner())

    threads = [threading.Thread(target=first_task) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(built) == 1
    assert got == built * 8
