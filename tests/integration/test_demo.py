"""`clipline demo` end to end with the real model: cut-outs a person would accept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.demo_images import SAMPLES

pytestmark = pytest.mark.slow


def test_demo_cuts_out_every_sample_cleanly(tmp_path: Path, models_dir: Path) -> None:
    clipline = str(Path(sys.executable).with_name("clipline"))
    env = {**os.environ, "CLIPLINE_MODELS_DIR": str(models_dir)}
    proc = subprocess.run([clipline, "demo", "--out", str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "contact-sheet.png" in proc.stderr
    with Image.open(tmp_path / "contact-sheet.png") as sheet:
        assert sheet.size[1] > 6 * 256
    for name in SAMPLES:
        with Image.open(tmp_path / "cutouts" / f"{name}.png") as cut:
            alpha = np.asarray(cut)[..., 3]
        # Every sample is one object in the middle of a plain studio background.
        assert alpha[316:324, 316:324].mean() > 200, name
        corners = [alpha[:40, :40], alpha[:40, -40:], alpha[-40:, :40], alpha[-40:, -40:]]
        assert max(c.mean() for c in corners) < 10, name
