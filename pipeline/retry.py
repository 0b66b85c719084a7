"""When to try a failed job again: a pure strategy, the only place that decides it.

Two budgets, because two kinds of failure have different owners:

- **the job's attempts** (``max_attempts``) pay for failures the job may be causing: a timeout
  of its own, an unexpected error, a worker that died while holding it;
- **the outage budget** (``outage_budget`` seconds) pays for failures that say a shared
  dependency is down (``ClipError.outage``: Triton, object storage, the database or the broker
  unavailable). Such a failure gives the attempt it used back, so a backlog waits out an
  outage instead of being dead-lettered by it; the job is dead only when the dependency has
  been failing it for longer than the budget, and then with the dependency's own reason.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the ledger records after a failed attempt.

    ``retry``: back to ``queued``, due after ``delay`` seconds; otherwise ``dead``.
    ``attempts``: the job's attempt count to store (one less than claimed for an outage).
    ``outage_since``: when the current run of outage failures began; ``None`` after any other.
    ``gave_up_after``: seconds of outage when the outage budget ran out, else ``None``.
    """

    retry: bool
    delay: float
    attempts: int
    outage_since: datetime | None
    gave_up_after: float | None = None

    def explained(self, message: str) -> str:
        """The failure's message, with why the job stopped waiting when the outage budget ran
        out."""
        if self.gave_up_after is None:
            return message
        return f"{message} (still failing after {self.gave_up_after:.0f} s: the outage budget)"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal jitter", and the outage rule above.

    Attempt ``n`` (1-based) waits between half and all of ``min(cap, base * 2**(n-1))`` seconds:
    the delay keeps growing, while workers that failed together spread out instead of coming
    back in step. During an outage the delay's ceiling is the outage's age so far, between
    ``base`` and ``outage_cap`` seconds, so a job keeps coming back about once a minute at most
    and is done soon after the dependency returns. ``outage_budget`` 0 turns the outage rule off
    (every transient failure spends an attempt), as the embedded run wants.
    """

    base: float = 2.0
    cap: float = 600.0
    outage_budget: float = 0.0
    outage_cap: float = 60.0

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * 2.0 ** max(0, attempt - 1))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        return _jittered(self.ceiling(attempt), rng)

    def after_failure(
        self, *, transient: bool, outage: bool, attempts: int, max_attempts: int,
        outage_since: datetime | None, now: datetime, rng: random.Random | None = None,
    ) -> Verdict:
        """Decide a failed attempt. ``attempts`` counts the attempt that just failed."""
        if transient and outage and self.outage_budget > 0:
            since = outage_since or now
            waited = (now - since).total_seconds()
            refunded = max(0, attempts - 1)
            if waited >= self.outage_budget:
                return Verdict(False, 0.0, refunded, since, gave_up_after=waited)
            top = min(self.outage_cap, max(self.base, waited))
            return Verdict(True, _jittered(top, rng), refunded, since)
        retry = transient and attempts < max_attempts
        return Verdict(retry, self.delay(attempts, rng) if retry else 0.0, attempts, None)


def due(now: datetime, verdict: Verdict) -> datetime:
    """When a retried job becomes claimable."""
    return now + timedelta(seconds=verdict.delay)


def _jittered(top: float, rng: random.Random | None) -> float:
    return top / 2 + (rng or random).uniform(0, top / 2)
