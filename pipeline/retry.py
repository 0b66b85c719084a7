"""When to try a failed job again: a pure strategy, the only place that decides it."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal jitter".

    Attempt ``n`` (1-based) waits between half and all of ``min(cap, base * 2**(n-1))`` seconds:
    the delay keeps growing, while workers that failed together spread out instead of coming
    back in step.
    """

    base: float = 2.0
    cap: float = 600.0

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * 2.0 ** max(0, attempt - 1))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        top = self.ceiling(attempt)
        return top / 2 + (rng or random).uniform(0, top / 2)
