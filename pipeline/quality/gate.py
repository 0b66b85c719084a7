"""The acceptance gate: a candidate report against a baseline, class by class.

A change (model, engine, precision, post-processing) passes only if no class got worse by more
than ``max_drop`` in any metric: IoU and boundary F may not fall, MAE and the re-composite error
may not rise, by more than ``max_drop`` (absolute, in the metric's own units) in a class's
mean. A class in the baseline but not in the candidate fails; a class only in the candidate is
reported and judged next time. Reports measured on other pictures (set fingerprints differ) or
with other metric definitions cannot be compared at all: :class:`BaselineMismatch`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import UsageError
from pipeline.quality.metrics import HIGHER_IS_BETTER
from pipeline.quality.report import METRICS, TITLES

DEFAULT_MAX_DROP = 0.005
WORST_SHOWN = 3


class BaselineMismatch(UsageError):
    """The baseline measured other pictures or used other metric definitions."""

    reason = "baseline_mismatch"


@dataclass(frozen=True)
class Regression:
    """One class and metric that got worse than allowed."""

    class_name: str
    metric: str
    before: float | None
    after: float | None
    losers: tuple[tuple[str, float, float], ...] = ()
    """(set/stem, before, after) of the images of the class that lost most in this metric."""

    def line(self) -> str:
        if self.after is None:
            return f"class {self.class_name}: missing from the candidate (was in the baseline)"
        worst = ", ".join(f"{name} {b:.3f} → {a:.3f}" for name, b, a in self.losers)
        return (f"class {self.class_name}: {TITLES[self.metric]} {self.before:.4f} → "
                f"{self.after:.4f} ({self.after - (self.before or 0.0):+.4f})"
                + (f"; lost most: {worst}" if worst else ""))


@dataclass(frozen=True)
class Verdict:
    regressions: tuple[Regression, ...]
    only_in_baseline: tuple[str, ...] = field(default=())
    only_in_candidate: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return not self.regressions


def check_comparable(baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> None:
    """Raise :class:`BaselineMismatch` unless both reports used the same metric definitions
    and the same sets (by name and fingerprint)."""
    if baseline["metrics_version"] != candidate["metrics_version"]:
        raise BaselineMismatch(
            f"the baseline's metrics are {baseline['metrics_version']}, these are "
            f"{candidate['metrics_version']}: measure the baseline again with this code")
    before = {s["name"]: s["fingerprint"] for s in baseline["sets"]}
    after = {s["name"]: s["fingerprint"] for s in candidate["sets"]}
    if before != after:
        only_here = sorted(after.keys() - before.keys())
        only_there = sorted(before.keys() - after.keys())
        differ = sorted(n for n in before.keys() & after.keys() if before[n] != after[n])
        parts = ([f"not in the baseline: {', '.join(only_here)}"] if only_here else []) + \
            ([f"in the baseline only: {', '.join(only_there)}"] if only_there else []) + \
            ([f"fingerprints differ for {', '.join(differ)}"] if differ else [])
        raise BaselineMismatch(
            "the baseline measured other pictures (" + "; ".join(parts)
            + "): evaluate the same sets, or measure the baseline again")


def judge(baseline: Mapping[str, Any], candidate: Mapping[str, Any],
          max_drop: float = DEFAULT_MAX_DROP) -> Verdict:
    """The verdict of ``candidate`` against ``baseline`` (both report dicts; see the module
    docstring). Call ``check_comparable`` first."""
    old, new = baseline["classes"], candidate["classes"]
    regressions: list[Regression] = []
    for name in sorted(old):
        if name not in new:
            regressions.append(Regression(name, "iou", old[name]["iou"], None))
            continue
        for metric in METRICS:
            before, after = old[name][metric], new[name][metric]
            if before is None or after is None:
                continue
            change = after - before if HIGHER_IS_BETTER[metric] else before - after
            if change < -max_drop:
                losers = lost_most(baseline, candidate, name, metric)
                regressions.append(Regression(name, metric, before, after, losers))
    return Verdict(
        regressions=tuple(regressions),
        only_in_baseline=tuple(sorted(set(old) - set(new))),
        only_in_candidate=tuple(sorted(set(new) - set(old))),
    )


def paired(baseline: Mapping[str, Any], candidate: Mapping[str, Any],
           class_name: str | None = None) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(before, after) image records of the images both reports hold, matched by set and stem;
    only those of ``class_name`` (in the candidate) when given."""
    before = {(r["set"], r["stem"]): r for r in baseline["images"]}
    return [
        (before[(r["set"], r["stem"])], r) for r in candidate["images"]
        if (r["set"], r["stem"]) in before and (class_name is None or r["class"] == class_name)
    ]


def lost_most(baseline: Mapping[str, Any], candidate: Mapping[str, Any], class_name: str,
              metric: str, count: int = WORST_SHOWN) -> tuple[tuple[str, float, float], ...]:
    """The ``count`` images of a class whose ``metric`` got worst, worst first."""
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    pairs = [(sign * (a[metric] - b[metric]), f"{a['set']}/{a['stem']}", b[metric], a[metric])
             for b, a in paired(baseline, candidate, class_name)]
    pairs.sort(key=lambda p: (p[0], p[1]))
    return tuple((name, b, a) for loss, name, b, a in pairs[:count] if loss < 0)
