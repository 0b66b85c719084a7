"""The embedded run over real folders and a real SQLite ledger: bad files fail alone, names
mirror, reruns do only what is left, and a SIGKILLed run resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipline.cli.run import run_folder
from pipeline.adapters.segmenters.fake import FakeSegmenter
from pipeline.demo_images import SAMPLES
from pipeline.options import OutputOptions
from pipeline.settings import Settings
from tests.unit.corpus import CASES

CLIPLINE = str(Path(sys.executable).with_name("clipline"))


def _fill(src: Path) -> None:
    for name, case in CASES.items():
        (src / "odd").mkdir(parents=True, exist_ok=True)
        (src / "odd" / f"{name}-{case.filename}").write_bytes(case.data)
    for name, draw in SAMPLES.items():
        path = src / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        draw().save(path)
    (src / "README.txt").write_text("not an image, skipped by name")


def _run(src: Path, dst: Path, **kw: object) -> object:
    return run_folder(src, dst, OutputOptions(), Settings(), model="fake",
                      segmenter=FakeSegmenter(), show_progress=False, batch_size=4, **kw)


def test_a_run_cuts_out_what_it_can_and_records_why_the_rest_failed(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    _fill(src)
    summary = _run(src, dst)
    bad = {n: c for n, c in CASES.items() if c.expect_error}
    expected_failures: dict[str, int] = {}
    for case in bad.values():
        reason = case.expect_error.reason  # type: ignore[union-attr]
        expected_failures[reason] = expected_failures.get(reason, 0) + 1
    assert summary.failed == expected_failures  # type: ignore[attr-defined]
    assert summary.succeeded == len(CASES) - len(bad) + len(SAMPLES)  # type: ignore[attr-defined]
    assert summary.skipped_files == 1  # type: ignore[attr-defined]
    assert summary.remaining == 0  # type: ignore[attr-defined]
    assert (dst / "kitchen" / "mug.png").exists()
    for name, case in CASES.items():
        outputs = list((dst / "odd").glob(f"{name}-*.png"))
        assert len(outputs) == (0 if case.expect_error else 1), name


def test_a_second_run_does_nothing_new_and_a_changed_file_is_redone(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    _fill(src)
    first = _run(src, dst)
    again = _run(src, dst)
    assert again.succeeded == 0  # type: ignore[attr-defined]
    assert again.already_done == first.succeeded  # type: ignore[attr-defined]
    mug = src / "kitchen" / "mug.jpg"
    Image.new("RGB", (50, 40), (0, 0, 255)).save(mug)
    os.utime(mug, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = _run(src, dst)
    assert third.succeeded == 1  # type: ignore[attr-defined]
    with Image.open(dst / "kitchen" / "mug.png") as redone:
        assert redone.size == (50, 40)


def test_output_folder_inside_the_source_is_refused(tmp_path: Path) -> None:
    from pipeline.errors import InvalidOptions

    (tmp_path / "in").mkdir()
    with pytest.raises(InvalidOptions, match="must not be inside"):
        _run(tmp_path / "in", tmp_path / "in" / "out")


def test_cli_reports_failures_with_exit_status_1(tmp_path: Path, models_dir: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    (src / "fake.jpg").write_text("plain text")
    Image.new("RGB", (64, 64), (255, 255, 255)).save(src / "white.png")
    env = {**os.environ, "CLIPLINE_MODELS_DIR": str(models_dir)}
    proc = subprocess.run([CLIPLINE, "run", str(src), str(dst)], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "1 x not_an_image" in proc.stderr
    assert "fake.jpg" in proc.stderr
    assert (dst / "white.png").exists()


def test_cli_bad_option_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    proc = subprocess.run(
        [CLIPLINE, "run", str(tmp_path / "in"), str(tmp_path / "out"), "--crop-margin", "70%"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 2
    assert "invalid_options" in proc.stderr and "crop_margin" in proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_a_stopped_run_resumes_and_finishes_every_image(
    tmp_path: Path, models_dir: Path, sig: signal.Signals
) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    rng = np.random.default_rng(3)
    total = 24
    for i in range(total):
        img = SAMPLES[list(SAMPLES)[i % len(SAMPLES)]]()
        img = img.rotate(float(rng.uniform(-8, 8)), fillcolor=(240, 240, 240))
        img.save(src / f"item-{i:02d}.jpg")
    env = {**os.environ, "CLIPLINE_MODELS_DIR": str(models_dir)}
    args = [CLIPLINE, "run", str(src), str(dst), "--batch-size", "2", "--threads", "1"]
    # Started as from a terminal, with Ctrl-C at its default: a child inherits an ignored
    # SIGINT, and Python then installs no KeyboardInterrupt handler. A test run started in the
    # background by a non-interactive shell (`make test &`, `nohup ... &` in a script) has
    # SIGINT ignored, and without this the child finished instead of stopping.
    as_from_a_terminal = [sys.executable, "-c", "import os, signal, sys; "
                          "signal.signal(signal.SIGINT, signal.SIG_DFL); "
                          "os.execv(sys.argv[1], sys.argv[1:])", *args]
    proc = subprocess.Popen(as_from_a_terminal, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(list(dst.glob("*.png"))) < 3 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err
        assert "run the same command to go on" in err
    done_before = len(list(dst.glob("*.png")))
    assert 3 <= done_before < total
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=400,
                           check=False)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in dst.glob("*.png")) == [f"item-{i:02d}.png" for i in range(total)]
    assert f"{done_before} already done" in rerun.stderr or "already done" in rerun.stderr
    assert not list(dst.rglob(".*.part"))


def test_pixel_limit_and_gif_come_from_the_settings(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (100, 100), (200, 0, 0)).save(src / "big.png")
    Image.new("RGB", (20, 20), (200, 0, 0)).save(src / "small.png")
    Image.new("P", (20, 20), 1).save(src / "still.gif")
    strict = run_folder(src, tmp_path / "a", OutputOptions(), Settings(max_pixels=5_000),
                        model="fake", segmenter=FakeSegmenter(), show_progress=False)
    assert strict.failed == {"too_many_pixels": 1, "unsupported_format": 1}
    relaxed = run_folder(src, tmp_path / "b", OutputOptions(), Settings(allow_gif=True),
                         model="fake", segmenter=FakeSegmenter(), show_progress=False)
    assert (relaxed.failed, relaxed.succeeded) == ({}, 3)


# -- the four faults of the issue, each on the small folder that showed it, through the CLI --


def clipline(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real `clipline` command; the fake segmenter keeps these runs fast."""
    return subprocess.run([CLIPLINE, *args], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "CLIPLINE_SEGMENTER": "fake", **env})


def jobs_of(dst: Path) -> list[tuple[str, str, str | None, str | None]]:
    """(key, status, reason, output) of every job in the run's ledger, sorted."""
    from pipeline.adapters.ledger.database import make_engine
    from pipeline.adapters.ledger.sql import SqlLedger

    ledger = SqlLedger(make_engine(f"sqlite:///{dst / '.clipline' / 'ledger.sqlite3'}"))
    try:
        return sorted((j.key, j.status.value, j.last_error_code,
                       (j.result or {}).get("output")) for j in ledger.list_jobs(limit=1000))
    finally:
        ledger.close()


def test_shoe_jpg_and_shoe_png_give_two_cut_outs_and_neither_overwrites(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.new("RGB", (40, 30), (200, 0, 0)).save(src / "shoe.jpg")
    Image.new("RGB", (50, 20), (0, 200, 0)).save(src / "shoe.png")
    done = clipline("run", str(src), str(dst))
    assert done.returncode == 0, done.stderr
    assert "2 cut out" in done.stderr and "2 images in all" in done.stderr
    assert sorted(p.name for p in dst.iterdir()) == [".clipline", "shoe.jpg.png", "shoe.png.png"]
    with Image.open(dst / "shoe.jpg.png") as a, Image.open(dst / "shoe.png.png") as b:
        assert (a.size, b.size) == ((40, 30), (50, 20))
    assert jobs_of(dst) == [("shoe.jpg", "succeeded", None, "shoe.jpg.png"),
                            ("shoe.png", "succeeded", None, "shoe.png.png")]


def test_a_file_name_that_is_not_utf8_is_refused_alone_and_the_rest_is_cut_out(
        tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    Image.new("RGB", (40, 30), (200, 0, 0)).save(src / "good.jpg")
    Image.new("RGB", (40, 30), (200, 0, 0)).save(os.fsdecode(bytes(src) + b"/caf\xe9.jpg"))
    for attempt in range(2):
        done = clipline("run", str(src), str(dst))
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert f"{1 - attempt} cut out" in done.stderr and "2 images in all" in done.stderr
        assert "refused 1 x invalid_file_name (not recorded as jobs)" in done.stderr
        assert "    caf\\xe9.jpg: invalid_file_name: the file name is not valid UTF-8" \
            in done.stderr
    assert sorted(p.name for p in dst.iterdir()) == [".clipline", "good.png"]
    assert jobs_of(dst) == [("good.jpg", "succeeded", None, "good.png")]


def test_a_half_copied_file_completed_later_counts_once_and_passes(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    photo = src / "photo.jpg"
    Image.new("RGB", (64, 48), (200, 0, 0)).save(tmp_path / "whole.jpg")
    whole = (tmp_path / "whole.jpg").read_bytes()
    photo.write_bytes(whole[: len(whole) // 2])
    first = clipline("run", str(src), str(dst))
    assert first.returncode == 1
    assert "failed 1 x corrupt_image" in first.stderr
    photo.write_bytes(whole)
    os.utime(photo, ns=(time.time_ns(), time.time_ns() + 10**9))
    second = clipline("run", str(src), str(dst))
    assert second.returncode == 0, second.stderr
    assert "1 cut out" in second.stderr and "1 image in all" in second.stderr
    assert "failed" not in second.stderr
    third = clipline("run", str(src), str(dst))
    assert third.returncode == 0, third.stderr
    assert "0 cut out" in third.stderr and "1 already done" in third.stderr
    assert "failed" not in third.stderr
    assert jobs_of(dst) == [("photo.jpg", "dead", "corrupt_image", None),
                            ("photo.jpg", "succeeded", None, "photo.png")]
    # `clipline status` counts what the summary counts: the file's current version.
    from clipline.cli.run import RUN_EDGES
    from pipeline.embedded import batch_id_for

    batch = batch_id_for(src, OutputOptions(edges=RUN_EDGES), "u2netp")
    counts = clipline("status", "--run", str(dst), "--batch", str(batch))
    assert counts.returncode == 0, counts.stderr
    lines = dict(line.split() for line in counts.stdout.splitlines())
    assert lines == {"queued": "0", "running": "0", "succeeded": "1", "dead": "0",
                     "cancelled": "0"}


def test_an_output_folder_that_cannot_be_written_is_one_line_and_exit_2(tmp_path: Path) -> None:
    # A DST whose parent is a regular file cannot be created, by root too (chmod cannot say so).
    (tmp_path / "in").mkdir()
    Image.new("RGB", (40, 30), (200, 0, 0)).save(tmp_path / "in" / "a.jpg")
    (tmp_path / "file").write_text("a file, not a folder")
    done = clipline("run", str(tmp_path / "in"), str(tmp_path / "file" / "out"))
    assert done.returncode == 2
    assert done.stderr == (f"clipline: output_folder_unusable: cannot write into DST "
                           f"{tmp_path / 'file' / 'out'}: Not a directory\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_read_only_output_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir(mode=0o500)
    done = clipline("run", str(tmp_path / "in"), str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr == (f"clipline: output_folder_unusable: cannot write into DST "
                           f"{tmp_path / 'out'}: Permission denied\n")
