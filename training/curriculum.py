"""The curriculum: named stages from simple cases to hard ones, and when a stage ends.

Both seeds of this product train from simple to hard (one subject on a plain background first,
busy natural scenes and groups with out-of-focus neighbours last) on classes balanced in one
set, never trained apart. A :class:`Stage` is a class mix (the composer's classes, plus
``pairs`` for real photo/mask pairs), an augmentation strength and a share of the run's steps.
Every stage after the first keeps the earlier classes in its mix, so nothing learnt first is
forgotten by the end.

A stage ends when its step budget is spent, or earlier when its validation loss flattens: no
improvement larger than ``min_delta`` (relative) over ``patience`` validations in a row. Pure
code: no torch; the loop asks :class:`Progress` what to do.

Shares are relative: each stage gets ``share / sum(shares)`` of ``--steps`` (at least one step).
A curriculum file is TOML::

    [[stage]]
    name = "plain"
    share = 0.15            # of --steps
    augment = 0.3           # 0..1
    mix = { product-plain = 1 }
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import UsageError
from pipeline.quality.composer import RECIPES

KNOWN_CLASSES = (*RECIPES, "pairs")
NEEDS = {"product-plain": "it needs --objects photo=DIR",
         "product-scene": "it needs --objects photo=DIR and --backgrounds photo=DIR",
         "multi": "it needs --objects photo=DIR", "illustration": "it needs --objects clipart=DIR",
         "people": "it needs --objects people=DIR", "pairs": "it needs --pairs DIR"}


class InvalidCurriculum(UsageError):
    """A curriculum that cannot be followed (nothing was trained)."""

    reason = "invalid_curriculum"


@dataclass(frozen=True)
class Stage:
    """One step of the curriculum: ``mix`` maps a class to its weight in every batch."""

    name: str
    mix: dict[str, float]
    augment: float
    share: float

    def check(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise InvalidCurriculum(f"stage name {self.name!r}: letters, digits, - and _ only")
        if not self.mix or any(w < 0 for w in self.mix.values()) or not sum(self.mix.values()):
            raise InvalidCurriculum(f"stage {self.name}: the mix needs a positive weight")
        if not 0.0 <= self.augment <= 1.0:
            raise InvalidCurriculum(f"stage {self.name}: augment must be within 0..1")
        if self.share <= 0:
            raise InvalidCurriculum(f"stage {self.name}: share must be positive")


@dataclass(frozen=True)
class Curriculum:
    stages: tuple[Stage, ...]
    patience: int = 3
    min_delta: float = 0.01

    def check(self, classes: set[str] | None = None) -> None:
        """Raise :class:`InvalidCurriculum` for an empty or malformed curriculum, or (given
        ``classes``, what the data can make) a stage that asks for a class it cannot."""
        if not self.stages:
            raise InvalidCurriculum("a curriculum needs at least one stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise InvalidCurriculum(f"stage names repeat: {', '.join(names)}")
        if self.patience < 1 or self.min_delta < 0:
            raise InvalidCurriculum("patience must be at least 1 and min_delta not negative")
        for stage in self.stages:
            stage.check()
            unknown = sorted(set(stage.mix) - set(KNOWN_CLASSES))
            if unknown:
                raise InvalidCurriculum(f"stage {stage.name}: unknown class "
                                        f"{', '.join(unknown)} (known: "
                                        f"{', '.join(KNOWN_CLASSES)})")
            missing = sorted(c for c, w in stage.mix.items()
                             if w > 0 and classes is not None and c not in classes)
            if missing:
                needs = "; ".join(NEEDS.get(c, c) for c in missing)
                raise InvalidCurriculum(f"stage {stage.name} asks for {', '.join(missing)}, "
                                        f"which the data given cannot make ({needs})")

    def check_steps(self, steps: int) -> None:
        """Every stage gets at least one step: refuse fewer steps than stages."""
        if steps < len(self.stages):
            raise InvalidCurriculum(f"{steps} steps for {len(self.stages)} stages: give "
                                    f"--steps {len(self.stages)} or more")

    def budgets(self, steps: int) -> list[int]:
        """Steps of each stage for a run of ``steps``: shares normalised, at least 1 each,
        the rounding left to the last stage."""
        total = sum(s.share for s in self.stages)
        out = [max(1, round(steps * s.share / total)) for s in self.stages[:-1]]
        return [*out, max(1, steps - sum(out))]

    def to_dict(self) -> dict[str, Any]:
        return {"stages": [asdict(s) for s in self.stages], "patience": self.patience,
                "min_delta": self.min_delta}


DEFAULT = Curriculum((
    Stage("plain", {"product-plain": 1.0}, augment=0.3, share=0.15),
    Stage("scenes", {"product-plain": 1.0, "product-scene": 2.0}, augment=0.6, share=0.2),
    Stage("illustrations", {"product-plain": 1.0, "product-scene": 1.0, "illustration": 2.0},
          augment=0.8, share=0.2),
    Stage("busy", {"product-plain": 1.0, "product-scene": 2.0, "illustration": 1.0,
                   "multi": 3.0}, augment=1.0, share=0.45),
))
"""Simple to hard: packshots on studio sweeps; then product scenes on photos; then
illustrations; last every class at once, weighted toward out-of-focus neighbours (``multi``)
and busy photos, where the released u2netp is weakest (docs/QUALITY.md)."""


def load(path: Path) -> Curriculum:
    """Read a TOML curriculum (module docstring). Raises :class:`InvalidCurriculum`."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidCurriculum(f"{path}: {exc}") from exc
    unknown = sorted(set(data) - {"stage", "patience", "min_delta"})
    if unknown:
        raise InvalidCurriculum(f"{path}: unknown key {', '.join(unknown)} (known: [[stage]], "
                                "patience, min_delta)")
    stages = []
    for i, table in enumerate(data.get("stage", []), 1):
        where = f"{path}: stage {i}"
        if not isinstance(table, dict):
            raise InvalidCurriculum(f"{where}: write each stage as a [[stage]] table")
        extra = sorted(set(table) - {"name", "mix", "augment", "share"})
        if extra:
            raise InvalidCurriculum(f"{where}: unknown key {', '.join(extra)} (known: name, "
                                    "mix, augment, share)")
        if "name" not in table or not isinstance(table.get("mix"), dict):
            raise InvalidCurriculum(f"{where}: needs name and mix = {{ CLASS = WEIGHT, ... }}")
        try:
            stages.append(Stage(str(table["name"]),
                                {str(k): float(v) for k, v in table["mix"].items()},
                                float(table.get("augment", 0.5)),
                                float(table.get("share", 1.0))))
        except (TypeError, ValueError) as exc:
            raise InvalidCurriculum(f"{where}: mix weights, augment and share are numbers "
                                    f"({exc})") from exc
    try:
        curriculum = Curriculum(tuple(stages), int(data.get("patience", 3)),
                                float(data.get("min_delta", 0.01)))
    except (TypeError, ValueError) as exc:
        raise InvalidCurriculum(f"{path}: patience and min_delta are numbers ({exc})") from exc
    curriculum.check()
    return curriculum


@dataclass
class Progress:
    """Where a run is: the stage, the steps taken in it, and its validation losses. Saved in
    every checkpoint (:meth:`to_dict`), so a resumed run continues in the same stage."""

    curriculum: Curriculum
    steps: int
    stage_index: int = 0
    stage_step: int = 0
    step: int = 0
    losses: list[float] = field(default_factory=list)  # validation losses of this stage
    ended: list[dict[str, Any]] = field(default_factory=list)  # stages done, and why

    @property
    def stage(self) -> Stage:
        return self.curriculum.stages[self.stage_index]

    @property
    def done(self) -> bool:
        return self.stage_index >= len(self.curriculum.stages)

    def step_done(self, val_loss: float | None = None) -> str | None:
        """Count one training step, with the validation loss measured after it (or None);
        returns why the stage ended ("budget": its steps are spent; "flat": its validation
        loss stopped improving) or None."""
        self.step += 1
        self.stage_step += 1
        if val_loss is not None:
            self.losses.append(val_loss)
        if self.stage_step >= self.curriculum.budgets(self.steps)[self.stage_index]:
            return self._next("budget")
        if val_loss is not None and self._flat():
            return self._next("flat")
        return None

    def _flat(self) -> bool:
        """No gain larger than ``min_delta`` over the last ``patience`` validations."""
        p, d = self.curriculum.patience, self.curriculum.min_delta
        if len(self.losses) <= p:
            return False
        return min(self.losses[-p:]) > min(self.losses[:-p]) * (1.0 - d)

    def _next(self, why: str) -> str:
        self.ended.append({"stage": self.stage.name, "steps": self.stage_step, "ended": why,
                           "at_step": self.step, "val_losses": list(self.losses)})
        self.stage_index += 1
        self.stage_step = 0
        self.losses = []
        return why

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "stage_index": self.stage_index,
                "stage_step": self.stage_step, "step": self.step, "losses": self.losses,
                "ended": self.ended}

    @classmethod
    def from_dict(cls, curriculum: Curriculum, data: dict[str, Any]) -> Progress:
        return cls(curriculum, int(data["steps"]), int(data["stage_index"]),
                   int(data["stage_step"]), int(data["step"]),
                   [float(x) for x in data["losses"]], list(data["ended"]))
