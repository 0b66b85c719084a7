"""`clipline run SRC DST --watch` as a real process with the real u2netp: a file copied in
slowly is read only once complete (never half, so never a corrupt_image job), Ctrl-C ends it
with the folder run's summary and exit status, and a restart redoes nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from pipeline.demo_images import SAMPLES

CLIPLINE = str(Path(sys.executable).with_name("clipline"))
SETTLE = 0.3


def picture(path: Path, sample: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    SAMPLES[sample]().resize((96, 72)).save(path, quality=95)
    return path


class Watch:
    """The command, started as from a terminal (Ctrl-C at its default: a child of a
    non-interactive shell would inherit SIGINT ignored), stderr in a file to poll."""

    def __init__(self, src: Path, dst: Path, models_dir: Path, log: Path) -> None:
        self.log = log
        args = [CLIPLINE, "run", str(src), str(dst), "--watch", "--settle", str(SETTLE),
                "--threads", "1"]
        from_a_terminal = [sys.executable, "-c", "import os, signal, sys; "
                           "signal.signal(signal.SIGINT, signal.SIG_DFL); "
                           "os.execv(sys.argv[1], sys.argv[1:])", *args]
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                from_a_terminal, stdout=subprocess.PIPE, stderr=err,
                env={**os.environ, "CLIPLINE_MODELS_DIR": str(models_dir)})

    @property
    def said(self) -> str:
        return self.log.read_text()

    def until(self, ready: Callable[[], bool], what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"the watch ended waiting for {what}: {self.said}"
            assert time.monotonic() < deadline, f"no {what} after {timeout} s: {self.said}"
            time.sleep(0.02)

    def stop(self) -> tuple[int, str]:
        """Ctrl-C; the exit status and all it said on stderr (stdout must stay empty)."""
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=60)
        assert out == b""
        return self.proc.returncode, self.said


def jobs_of(dst: Path) -> list[tuple[str, str, str | None]]:
    from pipeline.adapters.ledger.database import make_engine
    from pipeline.adapters.ledger.sql import SqlLedger

    ledger = SqlLedger(make_engine(f"sqlite:///{dst / '.clipline' / 'ledger.sqlite3'}"))
    try:
        return sorted((j.key, j.status.value, j.last_error_code)
                      for j in ledger.list_jobs(limit=100))
    finally:
        ledger.close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_slow_copy_is_read_once_complete_and_a_restart_redoes_nothing(
        tmp_path: Path, models_dir: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    whole = picture(tmp_path / "mug.jpg", "kitchen/mug").read_bytes()
    picture(tmp_path / "shoe.jpg", "footwear/sneaker")
    # What a one-shot run makes of the whole file, to compare the watch's cut-out with.
    reference = subprocess.run(
        [CLIPLINE, "run", str(tmp_path / "mug.jpg"), str(tmp_path / "reference.png")],
        capture_output=True, timeout=120, check=False,
        env={**os.environ, "CLIPLINE_MODELS_DIR": str(models_dir)})
    assert reference.returncode == 0, reference.stderr

    watch = Watch(src, dst, models_dir, tmp_path / "first.log")
    watch.until(lambda: "up to date: 0 done in all" in watch.said, "the first look")
    cut = dst / "mug.png"
    step = len(whole) // 12 + 1
    chunks = [whole[i:i + step] for i in range(0, len(whole), step)]
    with open(src / "mug.jpg", "wb") as copy:
        for n, chunk in enumerate(chunks):
            copy.write(chunk)
            copy.flush()
            time.sleep(SETTLE / 3)  # growing all along: never still for a settle interval
            if n == len(chunks) // 2 and sys.platform.startswith("linux"):
                # Half written, then still for 4 settle intervals with the writer holding it
                # open: Linux says it is open for writing, so it is not read either.
                time.sleep(4 * SETTLE)
            early = f"read after {n + 1} of {len(chunks)} chunks"
            assert not cut.exists() and "failed" not in watch.said, early
    watch.until(cut.exists, "the cut-out of the slow copy")
    with Image.open(cut) as image:
        image.load()
        assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (96, 72))
    assert cut.read_bytes() == (tmp_path / "reference.png").read_bytes()

    shutil.copy(tmp_path / "shoe.jpg", src / "shoe.jpg")
    watch.until(lambda: "1 cut out (2 done in all)" in watch.said, "the second cut-out")
    status, said = watch.stop()
    assert status == 0, said
    assert "2 cut out in " in said and "0 already done before this run; 2 images in all." \
        in said, said
    assert "failed" not in said and "Traceback" not in said
    assert f"Cut-outs are in {dst}" in said
    # One job per file, each succeeded: the half-copied file was never a job.
    assert jobs_of(dst) == [("mug.jpg", "succeeded", None), ("shoe.jpg", "succeeded", None)]
    made = {p.name: p.stat().st_mtime_ns for p in dst.glob("*.png")}
    assert sorted(made) == ["mug.png", "shoe.png"]

    again = Watch(src, dst, models_dir, tmp_path / "second.log")
    again.until(lambda: "up to date: 2 done in all" in again.said, "the restart's first look")
    status, said = again.stop()
    assert status == 0, said
    assert "0 cut out in " in said and "2 already done before this run; 2 images in all." \
        in said, said
    assert {p.name: p.stat().st_mtime_ns for p in dst.glob("*.png")} == made
    assert jobs_of(dst) == [("mug.jpg", "succeeded", None), ("shoe.jpg", "succeeded", None)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_file_that_cannot_be_cut_out_fails_alone_and_ctrl_c_exits_with_1(
        tmp_path: Path, models_dir: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / "mug.jpg", "kitchen/mug")
    (src / "notes.png").write_text("plain text, named like a picture")
    watch = Watch(src, dst, models_dir, tmp_path / "watch.log")
    watch.until(lambda: "up to date: 1 done in all" in watch.said, "the first round")
    assert "1 cut out, 1 failed (1 done in all)" in watch.said
    status, said = watch.stop()
    assert status == 1, said
    assert "failed 1 x not_an_image" in said and "notes.png: not_an_image: " in said
    assert "1 cut out in " in said and "2 images in all." in said
