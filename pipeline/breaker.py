"""Circuit breakers: a worker process stops taking jobs while a shared dependency is down.

One breaker per dependency (``inference``, ``storage``, ``ledger``, ``broker``), per process:

    closed ──(``threshold`` outage failures in a row)──► open
    open ──(``probe_after`` seconds)──► half-open: ONE job goes through as a probe
    half-open ──probe succeeds──► closed      half-open ──probe fails──► open again

While any breaker is open the worker claims nothing: each job id that arrives waits (a message
held, not a job) until a probe is due, so a backlog is not spun through in seconds and the
failures that still happen are only the probes. The job a probe fails gives its attempt back
(``pipeline.retry``). This is the classic pattern (M. Nygard, *Release It!*, 2007), kept small
because its state is per process and its only client is ``pipeline.worker``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipeline import logs, metrics
from pipeline.errors import ClipError

log = logs.get(__name__)

# Which dependency an outage error is about, by reason code (``pipeline.errors``).
DEPENDENCY = {"inference_unavailable": "inference", "storage_unavailable": "storage",
              "ledger_unavailable": "ledger", "broker_unavailable": "broker"}


def dependency_of(error: ClipError) -> str | None:
    """The dependency an outage error names (a timeout counts against ``other``); ``None``
    when the failure is not an outage."""
    if not error.outage:
        return None
    return DEPENDENCY.get(error.reason, "other")


@dataclass
class Breaker:
    """One dependency's breaker. Not thread-safe by itself: ``Breakers`` locks around it."""

    name: str
    failures: int = 0
    opened_at: float | None = None  # monotonic seconds; None while closed
    probing: bool = False

    @property
    def closed(self) -> bool:
        return self.opened_at is None

    def open_for(self, now: float) -> float:
        return 0.0 if self.opened_at is None else now - self.opened_at


@dataclass
class Breakers:
    """The breakers of one worker process. Thread-safe.

    ``threshold``: outage failures in a row that open a breaker; ``probe_after``: seconds an
    open breaker waits before it lets one probe through. ``clock``: monotonic seconds.
    """

    threshold: int = 3
    probe_after: float = 5.0
    clock: Callable[[], float] = time.monotonic
    _all: dict[str, Breaker] = field(default_factory=dict)
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def open_ones(self) -> list[str]:
        with self._lock:
            return sorted(b.name for b in self._all.values() if not b.closed)

    def acquire(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until a job may be taken: every breaker closed, or
        this caller chosen as the probe of the open ones. False when the time ran out."""
        deadline = self.clock() + timeout
        with self._lock:
            while True:
                blocked = [b for b in self._all.values() if not b.closed]
                if not blocked:
                    return True
                now = self.clock()
                due = [b for b in blocked if not b.probing and b.open_for(now) >= self.probe_after]
                if len(due) == len(blocked):
                    for b in due:
                        b.probing = True
                    log.info("circuit_probe", dependencies=[b.name for b in due])
                    return True
                if now >= deadline:
                    return False
                self._lock.wait(min(deadline - now, self._next_probe(blocked, now), 1.0))

    def succeeded(self) -> None:
        """A job went through: every dependency it used answered, so close everything."""
        with self._lock:
            for b in self._all.values():
                if not b.closed:
                    log.info("circuit_closed", dependency=b.name)
                    metrics.CIRCUIT_OPEN.labels(b.name).set(0)
                b.failures, b.opened_at, b.probing = 0, None, False
            self._lock.notify_all()

    def failed(self, error: ClipError) -> None:
        """A job failed: an outage counts against its dependency. Any other failure (a corrupt
        image, say) may have stopped before the dependency was reached, so it proves nothing:
        the breakers stay as they are and the next job may probe."""
        name = dependency_of(error)
        if name is None:
            self.release_probe()
            return
        with self._lock:
            b = self._all.setdefault(name, Breaker(name))
            b.failures += 1
            if b.probing or (b.closed and b.failures >= self.threshold):
                if b.closed:
                    log.warning("circuit_opened", dependency=name, reason=error.reason,
                                failures=b.failures)
                b.opened_at, b.probing = self.clock(), False
                metrics.CIRCUIT_OPEN.labels(name).set(1)
            self._lock.notify_all()

    def release_probe(self, names: Iterable[str] | None = None) -> None:
        """A probe ended without a verdict (the job was not claimable): let another try."""
        with self._lock:
            for b in self._all.values():
                if names is None or b.name in names:
                    b.probing = False
            self._lock.notify_all()

    def _next_probe(self, blocked: list[Breaker], now: float) -> float:
        waits = [self.probe_after - b.open_for(now) for b in blocked if not b.probing]
        return max(0.05, min(waits, default=self.probe_after))
