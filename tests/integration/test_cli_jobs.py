"""`clipline status` and `clipline redrive` on an embedded run's ledger, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

CLIPLINE = str(Path(sys.executable).with_name("clipline"))


def clipline(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLIPLINE, *args], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=180, check=False)


def test_a_failed_image_is_redriven_and_succeeds_after_the_limit_is_raised(
    tmp_path: Path, models_dir: Path
) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.new("RGB", (120, 100), (250, 250, 250)).save(src / "wide.png")
    models = {"CLIPLINE_MODELS_DIR": str(models_dir)}
    first = clipline("run", str(src), str(dst), CLIPLINE_MAX_PIXELS="5000", **models)
    assert first.returncode == 1
    assert "1 x too_many_pixels" in first.stderr
    batch = re.search(r"--batch ([0-9a-f-]{36})", first.stderr)
    assert batch, first.stderr

    counts = clipline("status", "--run", str(dst), "--batch", batch.group(1))
    assert counts.returncode == 0, counts.stderr
    assert "dead by too_many_pixels: 1" in counts.stdout
    nowhere = clipline("status", "--run", str(dst), "--batch", batch.group(1), "--report",
                       str(tmp_path / "no-such-folder" / "report.csv"))
    assert nowhere.returncode == 2 and "Traceback" not in nowhere.stderr
    assert "cannot write it (No such file or directory)" in nowhere.stderr
    report = clipline("status", "--run", str(dst), "--batch", batch.group(1), "--report",
                      str(tmp_path / "report.csv"))
    assert report.returncode == 0 and "report: 1 job(s) written" in report.stdout
    assert "too_many_pixels" in (tmp_path / "report.csv").read_text()

    moved = clipline("redrive", "--run", str(dst), "--reason", "too_many_pixels")
    assert moved.stdout.strip() == "re-driven: 1 job(s)"
    again = clipline("run", str(src), str(dst), **models)
    assert again.returncode == 0, again.stderr
    assert (dst / "wide.png").exists()


def test_status_of_one_job_and_the_refusals(tmp_path: Path) -> None:
    (tmp_path / "out" / ".clipline").mkdir(parents=True)
    missing = clipline("status", "--run", str(tmp_path / "out"), "--batch",
                       "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 2
    assert "no clipline run ledger" in missing.stderr
    neither = clipline("redrive", "--run", str(tmp_path / "out"))
    assert neither.returncode == 2
    assert "give --id, --reason or --batch" in neither.stderr


def test_status_prints_a_job_as_json(tmp_path: Path) -> None:
    from clipline.cli.run import run_folder
    from pipeline.adapters.segmenters.fake import FakeSegmenter
    from pipeline.options import OutputOptions
    from pipeline.settings import Settings

    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "bad.jpg").write_text("text")
    summary = run_folder(src, dst, OutputOptions(), Settings(), model="fake",
                         segmenter=FakeSegmenter(), show_progress=False)
    from pipeline.adapters.ledger.database import make_engine
    from pipeline.adapters.ledger.sql import SqlLedger

    ledger = SqlLedger(make_engine(f"sqlite:///{dst / '.clipline' / 'ledger.sqlite3'}"))
    job = ledger.list_jobs(batch_id=summary.batch_id)[0]
    ledger.close()
    shown = clipline("status", str(job.id), "--run", str(dst))
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert (record["status"], record["error"]) == ("dead", "not_an_image")
