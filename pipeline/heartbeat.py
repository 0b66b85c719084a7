"""Lease heartbeats: one thread per worker process keeps every job it is working on leased.

A thread per job would cost a thread start and join per job, which at hundreds of jobs per
second is a measurable share of the work. One thread wakes at the next due beat, extends the
leases that are due, and sleeps again; jobs come and go through ``holding``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from pipeline import logs
from pipeline.errors import ClipError, LeaseLost

log = logs.get(__name__)


class Beating(Protocol):
    def heartbeat(self, job_id: uuid.UUID, token: uuid.UUID) -> Any: ...


class Heartbeats:
    def __init__(self, ledger: Beating, interval: float) -> None:
        self._ledger = ledger
        self._interval = interval
        self._due: dict[uuid.UUID, tuple[uuid.UUID, float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def holding(self, job_id: uuid.UUID, token: uuid.UUID) -> Iterator[None]:
        """Keep the job's lease alive while the body runs."""
        with self._lock:
            self._due[job_id] = (token, time.monotonic() + self._interval, logs.current())
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="heartbeats", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._due.pop(job_id, None)

    def _run(self) -> None:
        while True:
            time.sleep(self._interval / 4)
            now = time.monotonic()
            with self._lock:
                due = [(j, t, ctx) for j, (t, at, ctx) in self._due.items() if at <= now]
            for job_id, token, context in due:
                self._beat(job_id, token, context, now)

    def _beat(self, job_id: uuid.UUID, token: uuid.UUID, context: dict[str, Any],
              now: float) -> None:
        try:
            self._ledger.heartbeat(job_id, token)
        except LeaseLost:
            log.warning("job_lease_lost", stage="heartbeat", **context)
            with self._lock:
                self._due.pop(job_id, None)
            return
        except ClipError as exc:  # the database blinked: try again at the next beat
            log.warning("heartbeat_failed", reason=exc.reason, message=exc.message, **context)
        with self._lock:
            if job_id in self._due:
                self._due[job_id] = (token, now + self._interval, context)
