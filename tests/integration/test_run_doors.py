"""`clipline run` on one file and through pipes: the real command, the real u2netp, real files
and pipes. Standard output carries the image's bytes and nothing else; every refusal and
failure is one line on stderr, with nothing on standard output."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline.demo_images import SAMPLES

CLIPLINE = str(Path(sys.executable).with_name("clipline"))
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A small product photo (96x72 JPEG)."""
    image = SAMPLES["kitchen/mug"]()
    image = image.resize((96, 72))
    path = tmp_path / "photos" / "mug.jpg"
    path.parent.mkdir()
    image.save(path)
    return path


def clipline(models_dir: Path, *args: str, stdin: bytes | None = None,
             **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CLIPLINE, *args], input=stdin, capture_output=True, timeout=120,
                          check=False,
                          env={**os.environ, "CLIPLINE_MODELS_DIR": str(models_dir), **env})


def test_a_file_into_a_file_takes_the_format_of_its_extension(
        tmp_path: Path, photo: Path, models_dir: Path) -> None:
    for name, fmt in (("cut.png", "PNG"), ("cut.jpeg", "JPEG")):
        done = clipline(models_dir, "run", str(photo), str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        assert done.stdout == b""
        with Image.open(tmp_path / name) as cut:
            assert (cut.format, cut.size) == (fmt, (96, 72))
            assert cut.mode == ("RGB" if fmt == "JPEG" else "RGBA")
        err = done.stderr.decode()
        assert err.count("\n") == 1 and "mug.jpg: cut out in " in err, err
        assert f"→ {tmp_path / name} (96x72 {fmt.lower().replace('jpeg', 'jpg')}, " in err
    # No ledger, no leftovers.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.jpeg", "cut.png", "photos"]


def test_a_file_into_a_folder_is_named_as_the_folder_run_names_it(
        tmp_path: Path, photo: Path, models_dir: Path) -> None:
    (tmp_path / "there").mkdir()
    for dst in ("there", "new"):
        done = clipline(models_dir, "run", str(photo), str(tmp_path / dst), "--format", "webp")
        assert done.returncode == 0, done.stderr
        assert [p.name for p in (tmp_path / dst).iterdir()] == ["mug.webp"]  # no .clipline/
        with Image.open(tmp_path / dst / "mug.webp") as cut:
            assert cut.size == (96, 72)


def test_a_pipe_in_and_out_carries_the_same_cut_out_as_a_file(
        tmp_path: Path, photo: Path, models_dir: Path) -> None:
    assert clipline(models_dir, "run", str(photo), str(tmp_path / "cut.png")).returncode == 0
    # `cat mug.jpg | clipline run - - > out.png`, pipe for pipe.
    env = {**os.environ, "CLIPLINE_MODELS_DIR": str(models_dir)}
    with subprocess.Popen(["cat", str(photo)], stdout=subprocess.PIPE) as cat, \
            subprocess.Popen([CLIPLINE, "run", "-", "-"], stdin=cat.stdout,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as run:
        assert cat.stdout is not None
        cat.stdout.close()  # the run holds the read end now
        out, err = run.communicate(timeout=120)
    assert run.returncode == 0 and cat.returncode == 0, err
    assert out.startswith(PNG)
    with Image.open(io.BytesIO(out)) as cut:
        cut.load()
        assert (cut.format, cut.mode, cut.size) == ("PNG", "RGBA", (96, 72))
    assert out == (tmp_path / "cut.png").read_bytes()
    assert PNG not in err and b"IHDR" not in err and b"IDAT" not in err
    text = err.decode()  # plain UTF-8 text: one line, no image bytes
    assert text.startswith("standard input: cut out in ") and text.count("\n") == 1, text
    assert text.endswith(f"→ standard output (96x72 png, {len(out)} bytes)\n"), text


def test_a_pipe_out_takes_the_format_option(photo: Path, models_dir: Path) -> None:
    done = clipline(models_dir, "run", str(photo), "-", "--format", "webp")
    assert done.returncode == 0, done.stderr
    with Image.open(io.BytesIO(done.stdout)) as cut:
        assert (cut.format, cut.size) == ("WEBP", (96, 72))


@pytest.mark.parametrize(("args", "stdin", "env", "status", "says"), [
    (["-", "-"], b"", {}, 1, "clipline: not_an_image: standard input is empty"),
    (["-", "-"], b"plain text, not a picture\n", {}, 1,
     "clipline: not_an_image: no image format recognised in the first bytes"),
    (["-", "-"], None, {"CLIPLINE_MAX_INPUT_BYTES": "1000"}, 1,
     "clipline: object_too_large: standard input has more than 1000 bytes, the limit "
     "(CLIPLINE_MAX_INPUT_BYTES)"),
    (["{tmp}/notes.txt", "{tmp}/cut.png"], None, {}, 1,
     "clipline: not_an_image: no image format recognised in the first bytes"),
    (["{photo}", "{tmp}/cut.gif"], None, {}, 2,
     "clipline: invalid_arguments: DST {tmp}/cut.gif: clipline writes .png, .webp, .jpg or "
     ".jpeg files, into a folder, or to - (standard output)"),
    (["{tmp}/photos", "{tmp}/cut.png"], None, {}, 2,
     "clipline: invalid_arguments: SRC is a folder, so DST must be a folder too, not "
     "{tmp}/cut.png"),
    (["{tmp}/photos", "-"], None, {}, 2,
     "clipline: invalid_arguments: SRC is a folder, so DST must be a folder too, not -"),
    (["-", "{tmp}/out"], None, {}, 2,
     "clipline: invalid_arguments: SRC - (standard input) has no file name to give a "
     "cut-out in a folder"),
    (["{photo}", "{tmp}/cut.png", "--format", "jpg"], None, {}, 2,
     "clipline: invalid_options: format: --format jpg but DST {tmp}/cut.png is a .png file"),
    (["{photo}", "{tmp}/out", "--watch"], None, {}, 2,
     "clipline: invalid_arguments: --watch watches a folder into a folder"),
    (["{photo}", "{photo}"], None, {}, 2,
     "clipline: invalid_arguments: DST {photo} is SRC itself"),
    (["{tmp}/photos", "{tmp}/out", "--settle", "0.5"], None, {}, 2,
     "clipline: invalid_arguments: --settle and --poll go with --watch"),
    (["{photo}", "{tmp}/cut.png", "--layers"], None, {}, 2,
     "clipline: invalid_arguments: --layers keeps each mask in a folder run's ledger"),
    (["{tmp}/missing.jpg", "{tmp}/cut.png"], None, {}, 2,
     "clipline: Invalid value for 'SRC': path '{tmp}/missing.jpg' does not exist."),
], ids=["empty-stdin", "stdin-not-an-image", "stdin-too-large", "file-not-an-image",
        "unknown-extension", "folder-to-file", "folder-to-stdout", "stdin-to-folder",
        "format-against-extension", "watch-a-file", "dst-is-src", "settle-without-watch",
        "layers-of-a-file", "missing-src"])
def test_a_refusal_or_a_failure_is_one_typed_line_and_nothing_on_stdout(
        tmp_path: Path, photo: Path, models_dir: Path, args: list[str], stdin: bytes | None,
        env: dict[str, str], status: int, says: str) -> None:
    (tmp_path / "notes.txt").write_text("plain text, not a picture\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    fill = {"tmp": tmp_path, "photo": photo}
    done = clipline(models_dir, "run", *[a.format(**fill) for a in args],
                    stdin=photo.read_bytes() if stdin is None else stdin, **env)
    err = done.stderr.decode()
    assert done.returncode == status, err
    assert done.stdout == b""
    assert err.startswith(says.format(**fill)) and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_a_terminal_is_neither_written_image_bytes_nor_read_as_an_image(
        tmp_path: Path, photo: Path, models_dir: Path) -> None:
    env = {**os.environ, "CLIPLINE_MODELS_DIR": str(models_dir)}
    leader, terminal = pty.openpty()
    try:
        onto = subprocess.run([CLIPLINE, "run", str(photo), "-"], stdout=terminal,
                              stderr=subprocess.PIPE, timeout=60, check=False, env=env)
        off = subprocess.run([CLIPLINE, "run", "-", str(tmp_path / "cut.png")], stdin=terminal,
                             capture_output=True, timeout=60, check=False, env=env)
    finally:
        os.close(terminal)
        os.close(leader)
    assert onto.returncode == 2 and off.returncode == 2
    assert onto.stderr.decode().startswith(
        "clipline: invalid_arguments: DST - would write image bytes to a terminal")
    assert off.stderr.decode().startswith("clipline: invalid_arguments: SRC - reads an image "
                                          "from standard input, which is a terminal")
    assert not (tmp_path / "cut.png").exists()
