"""File names in an embedded run, on real folders, a real SQLite ledger and the real `clipline`:
names are data (any byte string is cut out or refused alone), cut-outs never overwrite one
another, a file's history follows its current version, and a run that cannot start says why in
one line with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from clipline.cli.run import RUN_EDGES, run_folder
from pipeline.adapters.segmenters.fake import FakeSegmenter
from pipeline.embedded import Summary, batch_id_for, history_id_for
from pipeline.jobs import JobSpec, JobStatus
from pipeline.options import OutputOptions
from pipeline.settings import Settings
from tests.unlistable import refuse_listing

CLIPLINE = str(Path(sys.executable).with_name("clipline"))


def clipline(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLIPLINE, *args], capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "CLIPLINE_SEGMENTER": "fake", **env})


def picture(path: Path | str, size: tuple[int, int] = (40, 30)) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 0, 0)).save(path, format="PNG" if str(path).endswith(
        ".png") else None)


def size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def listing(dst: Path) -> list[str]:
    return sorted(os.fsdecode(p.relative_to(dst)) for p in dst.rglob("*")
                  if ".clipline" not in p.parts)


def run(src: Path, dst: Path, options: OutputOptions | None = None) -> Summary:
    return run_folder(src, dst, options or OutputOptions(), Settings(), model="fake",
                      segmenter=FakeSegmenter(), show_progress=False)


def ledger_of(dst: Path):  # type: ignore[no-untyped-def]
    from pipeline.adapters.ledger.database import make_engine
    from pipeline.adapters.ledger.sql import SqlLedger

    return SqlLedger(make_engine(f"sqlite:///{dst / '.clipline' / 'ledger.sqlite3'}"))


def test_a_name_with_a_newline_is_refused_and_shown_escaped(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / "good.jpg")
    picture(src / "two\nlines.jpg")
    done = clipline("run", str(src), str(dst))
    assert done.returncode == 1, done.stderr
    assert "    two\\x0alines.jpg: invalid_file_name: the file name contains the control " \
        "character U+000A at character 3\n" in done.stderr
    assert "refused 1 x invalid_file_name" in done.stderr
    assert listing(dst) == ["good.png"]


def test_a_name_of_255_bytes_is_cut_out(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / ("x" * 251 + ".jpg"))
    summary = run(src, dst)
    assert (summary.succeeded, summary.failed, summary.refused) == (1, {}, [])
    assert listing(dst) == ["x" * 251 + ".png"]


def test_an_output_name_too_long_for_the_file_system_fails_that_job_alone(
        tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    long = "y" * 251
    picture(src / f"{long}.jpg")  # with {long}.png beside it, its cut-out is {long}.jpg.png
    picture(src / f"{long}.png")
    picture(src / "z" / ("z" * 250 + ".jpeg"))  # .jpeg → .png: shorter, fine
    summary = run(src, dst)
    assert summary.failed == {"output_name_too_long": 2}
    assert summary.succeeded == 1
    assert {reason for _, reason, _ in summary.failures} == {"output_name_too_long"}
    assert listing(dst) == ["z", "z/" + "z" * 250 + ".png"]
    again = run(src, dst)  # permanent: not retried, and no job is stuck
    assert (again.succeeded, again.failed, again.remaining) == (0, summary.failed, 0)


def test_a_longer_extension_that_overflows_the_name_is_a_typed_failure(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / ("w" * 251 + ".jpg"))
    summary = run(src, dst, OutputOptions.parse({"format": "webp"}))
    assert summary.failed == {"output_name_too_long": 1}
    assert "256 bytes" in summary.failures[0][2]


def test_shoe_jpg_shoe_png_and_shoe_webp_in_capitals_get_three_names(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / "shoe.jpg", (10, 10))
    picture(src / "shoe.png", (20, 10))
    Image.new("RGB", (30, 10), (200, 0, 0)).save(src / "Shoe.webp")
    picture(src / "boot.jpg", (40, 10))
    done = clipline("run", str(src), str(dst))
    assert done.returncode == 0, done.stderr
    assert listing(dst) == ["Shoe.webp.png", "boot.png", "shoe.jpg.png", "shoe.png.png"]
    assert [size_of(dst / n) for n in listing(dst)] == [(30, 10), (40, 10), (10, 10),
                                                        (20, 10)]


def test_a_file_literally_named_like_a_disambiguated_cut_out_is_refused(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / "shoe.jpg", (10, 10))
    picture(src / "shoe.png", (20, 10))
    picture(src / "shoe.jpg.png", (30, 10))
    done = clipline("run", str(src), str(dst))
    assert done.returncode == 1
    assert "failed 1 x output_collision" in done.stderr
    assert "shoe.jpg.png: output_collision: output shoe.jpg.png is already the cut-out of " \
        "shoe.jpg" in done.stderr
    assert listing(dst) == ["shoe.jpg.png", "shoe.png.png"]
    assert size_of(dst / "shoe.jpg.png") == (10, 10)  # shoe.jpg's, not overwritten


def test_two_source_folders_into_one_output_folder_never_overwrite(tmp_path: Path) -> None:
    a, b, dst = tmp_path / "a", tmp_path / "b", tmp_path / "out"
    picture(a / "shoe.jpg", (10, 10))
    picture(b / "shoe.jpg", (20, 10))
    picture(b / "boot.jpg", (30, 10))
    assert clipline("run", str(a), str(dst)).returncode == 0
    second = clipline("run", str(b), str(dst))
    assert second.returncode == 1
    assert "failed 1 x output_collision" in second.stderr
    assert f"output shoe.png is the cut-out of shoe.jpg in {a}" in second.stderr
    assert listing(dst) == ["boot.png", "shoe.png"]
    assert size_of(dst / "shoe.png") == (10, 10)


def test_a_cut_out_left_by_a_source_that_has_gone_is_not_overwritten(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / "shoe.jpg", (10, 10))
    assert run(src, dst).succeeded == 1
    (src / "shoe.jpg").unlink()
    Image.new("RGB", (20, 10), (200, 0, 0)).save(src / "shoe.webp")
    summary = run(src, dst)
    assert (summary.total, summary.failed) == (1, {"output_collision": 1})
    assert size_of(dst / "shoe.png") == (10, 10)
    (dst / "shoe.png").unlink()  # the documented way out: move the old one away, redrive
    ledger = ledger_of(dst)
    try:
        assert ledger.redrive(reason="output_collision") == 1
    finally:
        ledger.close()
    after = run(src, dst)
    assert (after.succeeded, after.failed) == (1, {})
    assert size_of(dst / "shoe.png") == (20, 10)


def test_the_same_source_with_other_options_replaces_its_own_cut_out(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / "shoe.jpg", (100, 50))
    assert run(src, dst).succeeded == 1
    smaller = run(src, dst, OutputOptions.parse({"max_side": 20}))
    assert (smaller.succeeded, smaller.failed) == (1, {})
    assert size_of(dst / "shoe.png") == (20, 10)


def test_a_queued_job_of_a_superseded_version_is_cancelled_not_processed(
        tmp_path: Path) -> None:
    from pipeline import bootstrap

    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / "shoe.jpg")
    batch = batch_id_for(src, OutputOptions(), "fake")
    (dst / ".clipline").mkdir(parents=True)
    ledger = bootstrap.embedded_ledger(dst / ".clipline")
    ledger.create_batch(batch_id=batch)
    ledger.submit_many([JobSpec(str(src.resolve()), "shoe.jpg", "1:1",
                                OutputOptions().normalised(), "fake")], batch_id=batch)
    (old,) = ledger.list_jobs()
    ledger.close()
    summary = run(src, dst)
    assert (summary.total, summary.succeeded, summary.failed) == (1, 1, {})
    ledger = ledger_of(dst)
    try:
        gone = ledger.get(old.id)
        assert (gone.status, gone.batch_id) == (JobStatus.CANCELLED, history_id_for(batch))
        assert [e.action for e in ledger.events(old.id)][-2:] == ["cancelled", "moved"]
    finally:
        ledger.close()


def test_an_old_version_s_failure_is_not_redriven_and_stays_as_it_ended(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    (src / "photo.jpg").parent.mkdir(parents=True)
    (src / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 half a jpeg")
    assert run(src, dst).failed == {"corrupt_image": 1}
    picture(src / "photo.jpg")
    os.utime(src / "photo.jpg", ns=(1, 2 * 10**18))
    assert run(src, dst).failed == {}
    assert clipline("redrive", "--run", str(dst), "--reason", "corrupt_image").stdout \
        == "re-driven: 0 job(s)\n"
    again = run(src, dst)
    assert (again.total, again.succeeded, again.already_done, again.failed) == (1, 0, 1, {})
    ledger = ledger_of(dst)
    [old] = ledger.list_jobs(status=JobStatus.DEAD)
    ledger.close()
    assert (old.key, old.last_error_code) == ("photo.jpg", "corrupt_image")


def test_status_shows_the_refusals_the_summary_shows(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / "good.jpg")
    picture(os.fsdecode(bytes(src) + b"/bad\xff.jpg"))
    done = clipline("run", str(src), str(dst))
    assert done.returncode == 1
    batch = batch_id_for(src, OutputOptions(edges=RUN_EDGES), "u2netp")  # `run`'s defaults
    status = clipline("status", "--run", str(dst), "--batch", str(batch))
    assert status.returncode == 0, status.stderr
    assert "succeeded  1" in status.stdout
    assert "  refused by invalid_file_name: 1 (not jobs)\n    bad\\xff.jpg\n" in status.stdout


def test_a_folder_that_cannot_be_listed_is_reported_by_the_cli(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root lists a folder without permissions anyway (see the unit test of "
                    "scan, which stands in an unreadable folder)")
    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / "good.jpg")
    picture(src / "locked" / "a.jpg")
    (src / "locked").chmod(0)
    try:
        done = clipline("run", str(src), str(dst))
    finally:
        (src / "locked").chmod(0o700)
    assert done.returncode == 1
    assert "refused 1 x unreadable_folder" in done.stderr
    assert "locked/: unreadable_folder: cannot list the folder: Permission denied" in done.stderr


def test_an_unreadable_folder_is_reported_by_the_run(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    picture(src / "good.jpg")
    picture(src / "locked" / "a.jpg")
    refuse_listing(monkeypatch, "locked")
    summary = run(src, dst)
    assert summary.succeeded == 1 and not summary.ok
    assert summary.refused_by_reason == {"unreadable_folder": 1}


@pytest.mark.parametrize(("args", "env", "expected"), [
    (["run", "{tmp}/missing", "{tmp}/out"], {},
     "clipline: Invalid value for 'SRC': path '{tmp}/missing' does not exist. "
     "(see `clipline run --help`)"),
    (["run", "{tmp}/in", "{tmp}/out.png"], {},
     "clipline: invalid_arguments: SRC is a folder, so DST must be a folder too, not "
     "{tmp}/out.png"),
    (["run", "{tmp}/in", "{tmp}/in/out"], {},
     "clipline: invalid_options: DST {tmp}/in/out must not be inside SRC {tmp}/in"),
    (["run", "{tmp}/in", "{tmp}"], {},
     "clipline: invalid_options: SRC {tmp}/in must not be inside DST {tmp}: cut-outs would "
     "land among the sources"),
    (["run", "{tmp}/in", "{tmp}/out", "--format", "gif"], {}, "clipline: invalid_options: "),
    (["run", "{tmp}/in", "{tmp}/out", "--batch-size", "0"], {},
     "clipline: Invalid value for '--batch-size': "),
    (["run", "{tmp}/in", "{tmp}/out", "--colour", "red"], {},
     "clipline: No such option: --colour"),
    (["run", "{tmp}/in"], {}, "clipline: Missing argument 'DST'."),
    (["run", "{tmp}/in", "{tmp}/out"], {"CLIPLINE_MAX_PIXELS": "many"},
     "clipline: invalid setting: CLIPLINE_MAX_PIXELS: "),
    (["run", "{tmp}/in", "{tmp}/out\x1b[2J"], {},
     "clipline: invalid_field: DST: {tmp}/out\\x1b[2J contains the control character U+001B"),
    (["status", "--run", "{tmp}/in"], {}, "clipline: Invalid value: give a JOB id or --batch"),
    (["frobnicate"], {}, "clipline: No such command 'frobnicate'."),
], ids=["missing-src", "folder-to-file", "dst-in-src", "src-in-dst", "bad-format", "bad-number",
        "unknown-option", "missing-dst", "bad-setting", "control-character", "status-usage",
        "unknown-command"])
def test_a_run_that_cannot_start_says_why_in_one_line_with_exit_2(
        tmp_path: Path, args: list[str], env: dict[str, str], expected: str) -> None:
    picture(tmp_path / "in" / "a.jpg")
    done = clipline(*[a.format(tmp=tmp_path) for a in args], **env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
    assert done.stderr.startswith(expected.format(tmp=tmp_path)), done.stderr
    assert not (tmp_path / "out").exists()


def test_help_and_normal_exit_codes_are_unchanged(tmp_path: Path) -> None:
    helped = clipline("run", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("Usage: clipline run")
    assert "shoe.jpg.png" in helped.stdout
    bare = clipline()
    assert bare.returncode == 2 and "Commands" in bare.stderr + bare.stdout


def test_a_second_run_into_the_same_folder_is_refused_in_one_line(tmp_path: Path) -> None:
    from pipeline.embedded import run_lock

    picture(tmp_path / "in" / "a.jpg")
    with run_lock(tmp_path / "out"):
        done = clipline("run", str(tmp_path / "in"), str(tmp_path / "out"))
    assert done.returncode == 2
    assert done.stderr == (f"clipline: run_locked: another clipline run is writing into "
                           f"{tmp_path / 'out'}\n")


def test_a_damaged_ledger_in_dst_is_one_line_and_exit_2(tmp_path: Path) -> None:
    picture(tmp_path / "in" / "a.jpg")
    (tmp_path / "out" / ".clipline").mkdir(parents=True)
    (tmp_path / "out" / ".clipline" / "ledger.sqlite3").write_bytes(b"garbage, not a database")
    done = clipline("run", str(tmp_path / "in"), str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("clipline: ledger_damaged: the ledger's SQLite file is "
                                  "damaged (file is not a database)")
    assert done.stderr.count("\n") == 1


def test_a_missing_model_stops_the_run_before_dst_is_touched(tmp_path: Path) -> None:
    picture(tmp_path / "in" / "a.jpg")
    done = clipline("run", str(tmp_path / "in"), str(tmp_path / "out"),
                    CLIPLINE_SEGMENTER="onnx", CLIPLINE_MODELS_DIR=str(tmp_path / "no-models"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("clipline: model_error: ") and done.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()
