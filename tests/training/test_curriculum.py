"""training.curriculum: stage budgets, the flat-validation rule, the TOML file, resuming."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.curriculum import DEFAULT, Curriculum, InvalidCurriculum, Progress, Stage, load

TWO = Curriculum((Stage("easy", {"product-plain": 1.0}, 0.2, 1.0),
                  Stage("hard", {"product-plain": 1.0, "multi": 3.0}, 1.0, 3.0)),
                 patience=2, min_delta=0.01)


def test_budgets_follow_the_shares_and_add_up_to_the_steps() -> None:
    assert TWO.budgets(100) == [25, 75]
    assert sum(DEFAULT.budgets(360)) == 360
    assert DEFAULT.budgets(3) == [1, 1, 1, 1]  # every stage gets a step, even in a tiny run


def test_stages_end_on_their_budget_in_order() -> None:
    progress = Progress(TWO, 8)
    ends = [progress.step_done() for _ in range(8)]
    assert ends == [None, "budget", None, None, None, None, None, "budget"]
    assert progress.done
    assert [(e["stage"], e["steps"]) for e in progress.ended] == [("easy", 2), ("hard", 6)]


def test_a_stage_ends_early_when_its_validation_loss_flattens() -> None:
    progress = Progress(TWO, 100)
    assert progress.step_done(1.0) is None
    assert progress.step_done(0.9) is None  # improving
    assert progress.step_done() is None  # a step without validation changes nothing
    assert progress.step_done(0.8) is None
    assert progress.step_done(0.799) is None  # 0.1 % better than the best before: flat once
    assert progress.step_done(0.81) == "flat"  # patience 2: two flat validations end it
    assert progress.ended[0]["val_losses"] == [1.0, 0.9, 0.8, 0.799, 0.81]
    assert progress.stage.name == "hard" and progress.losses == []


def test_progress_survives_a_round_trip_through_its_dict() -> None:
    progress = Progress(TWO, 10)
    for _ in range(4):
        progress.step_done()
    progress.step_done(0.5)
    again = Progress.from_dict(TWO, progress.to_dict())
    assert again.to_dict() == progress.to_dict()
    assert again.stage.name == "hard"


def test_fewer_steps_than_stages_are_refused() -> None:
    with pytest.raises(InvalidCurriculum, match="--steps 4 or more"):
        DEFAULT.check_steps(3)


def test_a_class_is_refused_as_unknown_or_as_needing_a_source() -> None:
    with pytest.raises(InvalidCurriculum, match="unknown class product-plian"):
        Curriculum((Stage("a", {"product-plian": 1.0}, 0.5, 1.0),)).check({"product-plain"})
    with pytest.raises(InvalidCurriculum, match="--backgrounds photo=DIR"):
        DEFAULT.check({"product-plain", "illustration", "multi"})


def test_a_toml_curriculum_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('patience = 4\n[[stage]]\nname = "only"\nshare = 2\naugment = 0.5\n'
                    'mix = { multi = 1, illustration = 2 }\n')
    curriculum = load(path)
    assert curriculum.patience == 4
    assert curriculum.stages == (Stage("only", {"multi": 1.0, "illustration": 2.0}, 0.5, 2.0),)


@pytest.mark.parametrize("text, message", [
    ("", "at least one stage"),
    ('[[stage]]\nname = "a"\n', "needs name and mix"),
    ('[[stage]]\nname = "a"\nmix = { multi = 0 }\n', "positive weight"),
    ('[[stage]]\nname = "a"\naugment = 2\nmix = { multi = 1 }\n', "augment"),
    ('[[stage]]\nname = "a"\nmix = { multi = 1 }\n[[stage]]\nname = "a"\nmix = { multi = 1 }\n',
     "repeat"),
    ("[[stage]\n", "c.toml"),
    ('[[stage]]\nname = "a"\nshar = 1\nmix = { multi = 1 }\n', "unknown key shar"),
    ('patiance = 3\n[[stage]]\nname = "a"\nmix = { multi = 1 }\n', "unknown key patiance"),
    ('[[stage]]\nname = "a"\naugment = "high"\nmix = { multi = 1 }\n', "are numbers"),
])
def test_a_bad_curriculum_is_refused_with_the_reason(tmp_path: Path, text: str,
                                                     message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(InvalidCurriculum, match=message):
        load(path)
