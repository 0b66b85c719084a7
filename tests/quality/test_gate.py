"""CI's quality gate: u2netp through Clipline, per class, on a small seeded composite set,
against the committed baseline ``tests/quality/baseline.json``.

A change of model, engine, options or post-processing that makes any class worse by more than
0.005 in any metric (IoU, alpha MAE, boundary F, re-composite error, band re-composite error)
fails here, naming the class and the images that lost most. To accept such a change on
purpose: look at the contact sheets (``clipline eval … --against tests/quality/baseline.json``
writes them), then rebuild the baseline with ``make quality-baseline`` and say why in the
commit (docs/QUALITY.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tritonkit import TritonServer

ROOT = Path(__file__).resolve().parents[2]
BASELINE = Path(__file__).with_name("baseline.json")
CLIPLINE = Path(sys.executable).with_name("clipline")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _run(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def _gate_set(tmp_path: Path, models_dir: Path, **settings: str) -> dict[str, str]:
    """Build the ci-gate set under tmp_path; return the environment to evaluate it with."""
    env = {**os.environ, "CLIPLINE": str(CLIPLINE), "CLIPLINE_MODELS_DIR": str(models_dir),
           "CLIPLINE_DATA_DIR": str(tmp_path / "data"), "CLIPLINE_SEGMENTER": "onnx",
           **{f"CLIPLINE_{k}": v for k, v in settings.items()}}
    made = _run("scripts/quality-gate-set.sh", str(tmp_path), env=env)
    assert made.returncode == 0, made.stderr
    return env


def test_no_class_got_worse_than_the_committed_baseline(models_dir: Path, tmp_path: Path) -> None:
    env = _gate_set(tmp_path, models_dir)
    gate = _run(str(CLIPLINE), "eval", str(tmp_path / "ci-gate"), "--model", "u2netp",
                "--out", str(tmp_path / "eval"), "--against", str(BASELINE),
                "--max-drop", "0.005", "--sheet-count", "4", env=env)
    assert gate.returncode == 0, f"{gate.stdout}\n{gate.stderr}"
    assert "gate: passed" in gate.stdout + gate.stderr
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    baseline = json.loads(BASELINE.read_text())
    # The same pictures were measured (the gate refuses otherwise), all four classes, 6 each.
    assert [s["fingerprint"] for s in report["sets"]] == \
        [s["fingerprint"] for s in baseline["sets"]]
    assert report["sets"][0]["classes"] == {
        "illustration": 6, "multi": 6, "product-plain": 6, "product-scene": 6}
    assert sorted(p.name for p in (tmp_path / "eval" / "sheets").iterdir()) == [
        "illustration.png", "multi.png", "product-plain.png", "product-scene.png"]


def test_the_triton_engine_passes_the_gate_against_onnx_runtime(
    models_dir: Path, tmp_path: Path, triton: TritonServer
) -> None:
    # An engine change, judged as OPERATIONS.md says: Triton serves the uint8 rewrite of u2netp
    # (normalisation folded into the graph); per class it must match ONNX Runtime's baseline.
    env = _gate_set(tmp_path, models_dir, SEGMENTER="triton", TRITON_URL=triton.url)
    gate = _run(str(CLIPLINE), "eval", str(tmp_path / "ci-gate"), "--model", "u2netp",
                "--out", str(tmp_path / "eval"), "--against", str(BASELINE),
                "--max-drop", "0.005", "--sheet-count", "0", env=env)
    assert gate.returncode == 0, f"{gate.stdout}\n{gate.stderr}"
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["model"]["segmenter"] == "triton"
