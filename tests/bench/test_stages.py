"""bench.stages and bench.runtimes run as their docstrings say, at a tiny size, and print
their figure lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench.test_smoke import assert_prints, run

pytestmark = pytest.mark.slow


def test_stages(models_dir: Path) -> None:
    out = run("-m", "bench.stages", "--count", "2", "--side", "256", "--repeat", "1",
              "--models-dir", str(models_dir), timeout=60)
    assert_prints(
        out,
        r"^decode +\d+\.\d$",
        r"^encode +\d+\.\d +\d\.\d\d MB$",
        r"^encode, Pillow PNG l1 Z_RLE +\d+\.\d +\d\.\d\d MB$",
        r"^engine outside inference: \d+\.\d ms \(goal <= 60: the goal is for 2048x2048\)$",
        r"^ratio engine/previous: \d+\.\d\d$",
        r"^ratio engine/infer: \d\.\d{3}$",
    )


def test_stages_refuses_a_size_it_cannot_measure() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench.stages", "--count", "0"],
                          capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2 and "--count and --repeat must be >= 1" in proc.stderr


def test_runtimes(models_dir: Path) -> None:
    out = run("-m", "bench.runtimes", "--seconds", "0.5", "--images", "2", "--threads", "1",
              "--models-dir", str(models_dir), timeout=120)
    figures = r" +\d+\.\d ms   ratio onnxruntime/this +\d+\.\d\d   mask IoU vs onnxruntime min"
    assert_prints(out, r"^onnxruntime f32" + figures + r" 1\.0000 ",
                  r"^openvino f32" + figures + r" [01]\.\d{4} ",
                  r"^openvino default \((f32|bf16|f16)\)" + figures)
