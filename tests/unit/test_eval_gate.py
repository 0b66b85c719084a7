"""The gate of `clipline eval`, the report table, and the contact sheet's choice of images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.quality.gate import BaselineMismatch, check_comparable, judge
from pipeline.quality.report import InvalidReport, load_report, markdown
from pipeline.quality.sets import load_set
from pipeline.quality.sheets import changed_most, sheet_name, worst, write_sheets
from tests.unit.evalkit import composite_set, image, report


def _baseline() -> dict[str, object]:
    return report([
        image("a1", "plain", iou=0.95), image("a2", "plain", iou=0.93),
        image("b1", "scene", iou=0.70), image("b2", "scene", iou=0.74),
    ])


def test_a_regression_in_one_class_fails_and_names_the_class_and_the_image() -> None:
    worse = report([
        image("a1", "plain", iou=0.97), image("a2", "plain", iou=0.95),  # better
        image("b1", "scene", iou=0.60), image("b2", "scene", iou=0.74),  # one image lost 0.10
    ])
    verdict = judge(_baseline(), worse, max_drop=0.005)
    assert not verdict.passed
    [regression] = verdict.regressions
    assert (regression.class_name, regression.metric) == ("scene", "iou")
    assert regression.losers[0][0] == "s/b1"
    line = regression.line()
    assert "scene" in line and "0.7200 → 0.6700" in line and "s/b1 0.700 → 0.600" in line


def test_a_change_that_only_improves_passes() -> None:
    better = report([
        image("a1", "plain", iou=0.96, mae=0.04), image("a2", "plain", iou=0.94),
        image("b1", "scene", iou=0.75, recomposite=0.02), image("b2", "scene", iou=0.74),
    ])
    assert judge(_baseline(), better).passed


def test_lower_is_better_metrics_fail_when_they_rise() -> None:
    halo = report([
        image("a1", "plain", iou=0.95), image("a2", "plain", iou=0.93),
        image("b1", "scene", iou=0.70, recomposite=0.05), image("b2", "scene", iou=0.74),
    ])
    [regression] = judge(_baseline(), halo).regressions
    assert (regression.class_name, regression.metric) == ("scene", "recomposite")


def test_the_band_error_fails_when_it_rises_and_passes_when_it_falls() -> None:
    spill = report([
        image("a1", "plain", iou=0.95, recomposite_band=0.12), image("a2", "plain", iou=0.93),
        image("b1", "scene", iou=0.70), image("b2", "scene", iou=0.74),
    ])
    [regression] = judge(_baseline(), spill).regressions
    assert (regression.class_name, regression.metric) == ("plain", "recomposite_band")
    assert "band re-composite 0.1000 → 0.1100" in regression.line()
    cleaner = report([
        image("a1", "plain", iou=0.95, recomposite_band=0.05), image("a2", "plain", iou=0.93),
        image("b1", "scene", iou=0.70), image("b2", "scene", iou=0.74),
    ])
    assert judge(_baseline(), cleaner).passed


def test_a_drop_within_the_allowance_passes() -> None:
    slight = report([
        image("a1", "plain", iou=0.945), image("a2", "plain", iou=0.93),
        image("b1", "scene", iou=0.70), image("b2", "scene", iou=0.74),
    ])
    assert judge(_baseline(), slight, max_drop=0.005).passed
    assert not judge(_baseline(), slight, max_drop=0.001).passed


def test_a_class_missing_from_the_candidate_fails_and_a_new_one_is_noted() -> None:
    other = report([image("a1", "plain", iou=0.95), image("a2", "plain", iou=0.93),
                    image("c1", "people")])
    verdict = judge(_baseline(), other)
    assert [r.class_name for r in verdict.regressions] == ["scene"]
    assert "missing from the candidate" in verdict.regressions[0].line()
    assert verdict.only_in_candidate == ("people",)


def test_other_pictures_or_other_definitions_are_refused() -> None:
    base = _baseline()
    with pytest.raises(BaselineMismatch, match="fingerprints differ for s"):
        check_comparable(base, report([image("a1", "plain")], fingerprint="0" * 64))
    with pytest.raises(BaselineMismatch, match="metrics"):
        check_comparable(base, {**base, "metrics_version": "clipline-metrics/0"})
    check_comparable(base, report([image("x", "plain")]))  # same set: comparable


def test_the_table_has_a_row_per_class_the_overall_and_deltas_against_a_baseline() -> None:
    cand = report([image("a1", "plain", iou=0.97), image("a2", "plain", iou=0.93),
                   image("b1", "scene"), image("b2", "scene")])
    table = markdown(cand, _baseline())
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert rows[0].startswith("| class | n | IoU | MAE | boundary F | re-composite")
    assert [r.split(" | ")[0] for r in rows[1:]] == ["| plain", "| scene", "| **overall**"]
    assert "0.9500 (+0.0100)" in rows[1]


def test_the_images_that_changed_most_are_chosen_by_iou_then_mae() -> None:
    base = report([image(f"p{i}", "plain", iou=0.9, mae=0.05) for i in range(5)])
    cand = report([
        image("p0", "plain", iou=0.9, mae=0.05),
        image("p1", "plain", iou=0.7, mae=0.05),   # |Δ IoU| 0.2
        image("p2", "plain", iou=0.95, mae=0.05),  # 0.05
        image("p3", "plain", iou=0.9, mae=0.15),   # IoU same, MAE moved most among the rest
        image("p4", "plain", iou=0.9, mae=0.06),
    ])
    assert [a["stem"] for _, a in changed_most(base, cand, "plain", 3)] == ["p1", "p2", "p3"]
    assert [r["stem"] for r in worst(cand, "plain", 2)] == ["p1", "p3"]
    assert sheet_name("product/plain scene") == "product_plain_scene.png"


def test_the_contact_sheet_is_written_with_a_row_per_chosen_image(tmp_path: Path) -> None:
    root = composite_set(tmp_path / "set", {"plain": 4, "scene": 2})
    eval_set = load_set(root)
    cutouts = tmp_path / "cand"
    (cutouts / "set").mkdir(parents=True)
    for item in eval_set.items:
        cut = np.zeros((48, 64, 4), np.uint8)
        cut[10:30, 10:30] = (0, 200, 0, 255)
        Image.fromarray(cut, "RGBA").save(cutouts / "set" / f"{item.stem}.png")
    stems = [i.stem for i in eval_set.items]
    base = report([image(s, s.split("-")[0]) for s in stems], set_name="set")
    cand = report([image(s, s.split("-")[0], iou=0.9 - 0.1 * k) for k, s in enumerate(stems)],
                  set_name="set")
    written = write_sheets(tmp_path / "sheets", [eval_set], cand, cutouts, base,
                           baseline_cutouts=tmp_path / "gone", count=3)
    assert [p.name for p in written] == ["plain.png", "scene.png"]
    with Image.open(written[0]) as sheet:
        plain = sheet.size
    with Image.open(written[1]) as sheet:
        scene = sheet.size
    assert plain[0] == scene[0] == 12 + 4 * (256 + 12)  # four columns
    # 64x48 pictures (never enlarged): plain has 3 rows (count), scene its 2 images.
    assert plain[1] - scene[1] == 48 + 18 + 12
    chosen = [a["stem"] for _, a in changed_most(base, cand, "plain", 3)]
    assert chosen == ["plain-003", "plain-002", "plain-001"]


@pytest.mark.parametrize(("damage", "words"), [
    (lambda d: d["classes"]["plain"].pop("iou"), "class 'plain' lacks a number"),
    (lambda d: d["classes"]["plain"].update(iou="x"), "class 'plain' lacks a number"),
    (lambda d: d.update(images=None), "'images' must be a list"),
    (lambda d: d["images"][0].pop("stem"), "an image row is not"),
    # A clipline-metrics/1 report's rows and classes have no band column.
    (lambda d: d["images"][0].pop("recomposite_band"), "recomposite, recomposite_band"),
    (lambda d: d["classes"]["plain"].pop("recomposite_band"), "class 'plain' lacks a number"),
    (lambda d: d.update(sets=[{"name": 1}]), "'sets' must be a list"),
])
def test_a_damaged_baseline_is_refused_when_it_is_read(
        tmp_path: Path, damage: object, words: str) -> None:
    data = _baseline()
    damage(data)  # type: ignore[operator]
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InvalidReport, match=words):
        load_report(path)


def test_an_intact_report_loads() -> None:
    path = Path(__file__).parents[1] / "quality" / "baseline.json"
    assert load_report(path)["model"]["name"] == "u2netp"
