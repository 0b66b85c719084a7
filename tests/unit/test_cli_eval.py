"""`clipline eval` end to end through the one entry point: the fake segmenter stands in for the
model (it is not what is tested), except in the one test that runs the real u2netp."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import structlog
from PIL import Image

from clipline.cli import main
from pipeline.models import U2NETP
from pipeline.quality.sets import InvalidEvalSet, load_set
from tests.unit.evalkit import composite_set, real_set


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # `clipline eval` configures logging on pytest's captured stderr, which is closed after the
    # test: later tests must not write to it.
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "clipline", False)]:
        root.removeHandler(handler)


def _eval(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
          *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["clipline", "eval", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out, err = capsys.readouterr()
    return int(exit_.value.code or 0), out, err


@pytest.fixture
def fake_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLIPLINE_SEGMENTER", "fake")
    monkeypatch.setenv("CLIPLINE_DATA_DIR", str(tmp_path / "data"))


@pytest.mark.usefixtures("fake_engine")
def test_eval_reports_per_class_and_a_rerun_passes_its_own_gate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    comp = composite_set(tmp_path / "comp", {"product-plain": 3, "multi": 2})
    real = real_set(tmp_path / "shots")
    first = tmp_path / "first"
    code, out, err = _eval(monkeypatch, capsys, str(comp), str(real), "--out", str(first))
    assert code == 0, err
    assert "| class | n | IoU |" in out and "| multi | 2 |" in out and "| shots | 3 |" in out
    data = json.loads((first / "report.json").read_text())
    assert set(data["classes"]) == {"product-plain", "multi", "shots"}
    assert data["overall"]["n"] == 8 and len(data["images"]) == 8
    assert data["classes"]["product-plain"]["iou"] > 0.8  # the fake finds a square on white
    assert data["model"] == {"name": "u2netp", "segmenter": "fake", "sha256": None}
    assert data["options"]["subject"] == "all" and data["code_version"]["package"]
    assert {s["name"]: s["count"] for s in data["sets"]} == {"comp": 5, "shots": 3}
    assert (first / "cutouts" / "comp" / "multi-003.png").is_file()
    assert (first / "report.md").read_text() == out
    assert sorted(p.name for p in (first / "sheets").iterdir()) == [
        "multi.png", "product-plain.png", "shots.png"]

    second = tmp_path / "second"
    code, out, err = _eval(monkeypatch, capsys, str(comp), str(real), "--out", str(second),
                           "--against", str(first / "report.json"))
    assert code == 0, err
    assert "gate: passed" in err and "(+0.0000)" in out
    with Image.open(second / "sheets" / "multi.png") as sheet:
        assert sheet.size[0] == 12 + 4 * (256 + 12)  # input | baseline | candidate | truth


@pytest.mark.usefixtures("fake_engine")
def test_a_class_that_got_worse_fails_the_gate_with_exit_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    comp = composite_set(tmp_path / "comp", {"product-plain": 2, "illustration": 2})
    base = tmp_path / "base"
    assert _eval(monkeypatch, capsys, str(comp), "--out", str(base), "--sheet-count", "0")[0] == 0
    report = json.loads((base / "report.json").read_text())
    report["classes"]["illustration"]["iou"] += 0.1  # the baseline was better in one class
    for row in report["images"]:
        if row["class"] == "illustration":
            row["iou"] += 0.1
    (base / "report.json").write_text(json.dumps(report))
    code, _, err = _eval(monkeypatch, capsys, str(comp), "--out", str(tmp_path / "cand"),
                         "--against", str(base / "report.json"))
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("gate:")]
    assert len(lines) == 1 and "class illustration: IoU" in lines[0]
    assert "comp/illustration-" in lines[0]


@pytest.mark.usefixtures("fake_engine")
def test_a_baseline_of_other_pictures_is_refused_with_exit_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = real_set(tmp_path / "shots")
    base = tmp_path / "base"
    assert _eval(monkeypatch, capsys, str(real), "--out", str(base))[0] == 0
    mask = real / "masks" / "shot0.png"
    Image.fromarray(np.zeros((48, 64), np.uint8), "L").save(mask)
    code, out, err = _eval(monkeypatch, capsys, str(real), "--out", str(tmp_path / "c"),
                           "--against", str(base / "report.json"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "baseline_mismatch" in err and "shots" in err


@pytest.mark.usefixtures("fake_engine")
def test_set_problems_are_one_line_and_exit_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = real_set(tmp_path / "shots")
    (real / "masks" / "shot1.png").unlink()
    code, _, err = _eval(monkeypatch, capsys, str(real), "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1
    assert "invalid_eval_set" in err and "shot1.png: no mask" in err

    train = composite_set(tmp_path / "train", {"product-plain": 1}, split="train")
    code, _, err = _eval(monkeypatch, capsys, str(train), "--out", str(tmp_path / "o"))
    assert code == 2 and "training split" in err
    assert _eval(monkeypatch, capsys, str(train), "--out", str(tmp_path / "o"),
                 "--allow-train")[0] == 0


def test_sets_are_checked_and_fingerprinted_by_content(tmp_path: Path) -> None:
    real = real_set(tmp_path / "shots")
    loaded = load_set(real)
    assert loaded.kind == "real" and loaded.class_counts() == {"shots": 3}
    assert load_set(real, class_name="scenes").class_counts() == {"scenes": 3}
    moved = real.rename(tmp_path / "elsewhere")
    assert load_set(moved).fingerprint == loaded.fingerprint
    # The same pixels packed otherwise (another zlib level, another Pillow): the same set.
    shot = next((moved / "masks").iterdir())
    with Image.open(shot) as im:
        im.load()
        im.save(shot, compress_level=0)
    assert load_set(moved).fingerprint == loaded.fingerprint
    Image.new("L", (64, 40)).save(moved / "masks" / "shot2.png")
    with pytest.raises(InvalidEvalSet, match=r"shot2.png: mask is 64x40, its image shot2.png"):
        load_set(moved)
    (moved / "masks" / "shot2.png").write_bytes(b"not a png")
    with pytest.raises(InvalidEvalSet, match="cannot be read as an image"):
        load_set(moved)
    comp = composite_set(tmp_path / "comp", {"multi": 2})
    (comp / "foreground" / "multi-001.png").unlink()
    with pytest.raises(InvalidEvalSet, match="no true foreground"):
        load_set(comp)


def test_eval_with_the_real_u2netp(
    tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLIPLINE_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("CLIPLINE_DATA_DIR", str(tmp_path / "data"))
    comp = composite_set(tmp_path / "comp", {"product-plain": 2})
    code, out, err = _eval(monkeypatch, capsys, str(comp), "--model", "u2netp",
                           "--out", str(tmp_path / "o"))
    assert code == 0, err
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    assert data["model"] == {"name": "u2netp", "segmenter": "onnx", "sha256": U2NETP.sha256}
    assert data["classes"]["product-plain"]["iou"] > 0.5, out


def test_a_palette_mask_is_refused_before_any_model_runs(tmp_path: Path) -> None:
    real = real_set(tmp_path / "shots")
    mask = next((real / "masks").iterdir())
    with Image.open(mask) as im:
        im.convert("P").save(mask)
    with pytest.raises(InvalidEvalSet, match=r"mask mode P, expected 8-bit grey"):
        load_set(real)
