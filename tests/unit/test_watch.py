"""Which files a watching run reads (``pipeline.watch``), and which SRC and DST go together
(``clipline.cli.run_single.doors``): pure rules, a manual clock, real files."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from clipline.cli.run_single import Doors, InvalidArguments, doors, read_capped
from pipeline.errors import InvalidOptions, NotAnImage, ObjectTooLarge
from pipeline.watch import Settling, open_for_writing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def settling(writing: set[str] | None = None) -> tuple[Settling, Clock]:
    clock = Clock()
    held = writing if writing is not None else set()
    return Settling(1.0, clock=clock, writing=lambda path: path.name in held), clock


def test_a_file_is_read_once_it_has_kept_its_version_for_the_settle_time() -> None:
    rules, clock = settling()
    assert rules.ready(Path("/src"), {"a.jpg": "10:1"}) == {}
    assert rules.next_look() == pytest.approx(1.0)
    clock.now += 0.6
    assert rules.ready(Path("/src"), {"a.jpg": "10:1"}) == {}
    assert rules.next_look() == pytest.approx(0.4)
    clock.now += 0.4
    assert rules.ready(Path("/src"), {"a.jpg": "10:1"}) == {"a.jpg": "10:1"}
    assert rules.waiting == 0 and rules.next_look() is None


def test_a_file_that_keeps_growing_is_never_ready_however_long_it_takes() -> None:
    rules, clock = settling()
    for size in range(1, 30):  # 29 s of writing, a chunk every 0.9 s: never still for 1 s
        assert rules.ready(Path("/src"), {"a.jpg": f"{size}:{size}"}) == {}
        clock.now += 0.9
    assert rules.waiting == 1
    clock.now += 1.0
    assert rules.ready(Path("/src"), {"a.jpg": "29:29"}) == {"a.jpg": "29:29"}


def test_a_still_file_held_open_for_writing_waits_for_its_writer() -> None:
    held = {"a.jpg"}
    rules, clock = settling(held)
    rules.ready(Path("/src"), {"a.jpg": "5:1"})
    clock.now += 5
    assert rules.ready(Path("/src"), {"a.jpg": "5:1"}) == {}
    assert rules.next_look() == pytest.approx(1.0)  # looked at again every settle interval
    held.clear()
    clock.now += 1
    assert rules.ready(Path("/src"), {"a.jpg": "5:1"}) == {"a.jpg": "5:1"}


def test_a_changed_file_settles_again_and_a_settled_one_is_not_asked_again() -> None:
    asked: list[str] = []
    clock = Clock()
    rules = Settling(1.0, clock=clock, writing=lambda path: asked.append(path.name) or False)
    rules.ready(Path("/src"), {"a.jpg": "5:1", "b.jpg": "5:1"})
    clock.now += 1
    assert rules.ready(Path("/src"), {"a.jpg": "5:1", "b.jpg": "5:1"}) == {"a.jpg": "5:1",
                                                                             "b.jpg": "5:1"}
    clock.now += 1
    assert rules.ready(Path("/src"), {"a.jpg": "6:2", "b.jpg": "5:1"}) == {"b.jpg": "5:1"}
    assert sorted(asked) == ["a.jpg", "b.jpg"]  # b's settled version: no second look
    clock.now += 1
    assert rules.ready(Path("/src"), {"a.jpg": "6:2"}) == {"a.jpg": "6:2"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="leases are Linux's")
def test_linux_tells_a_file_open_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    with open(path, "wb") as writer:
        writer.write(b"half")
        writer.flush()
        assert open_for_writing(path)
    assert not open_for_writing(path)
    with open(path, "rb"):
        assert not open_for_writing(path)  # readers do not count
    assert not open_for_writing(tmp_path / "gone.jpg")


# -- doors ------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    (tmp_path / "cutouts").mkdir()
    return tmp_path


@pytest.mark.parametrize(("src", "dst", "fmt", "expected"), [
    ("photos", "cutouts", None, ("folder", "folder", "png")),
    ("photos", "new", "webp", ("folder", "new-folder", "webp")),
    ("photos", "cutouts.v2", None, ("folder", "folder", "png")),
    ("photos/a.jpg", "cut.webp", None, ("file", "file", "webp")),
    ("photos/a.jpg", "cut.JPEG", "jpg", ("file", "file", "jpg")),
    ("photos/a.jpg", "cutouts", None, ("file", "folder", "png")),
    ("photos/a.jpg", "new", None, ("file", "new-folder", "png")),
    ("photos/a.jpg", "-", "webp", ("file", "pipe", "webp")),
    ("-", "-", None, ("pipe", "pipe", "png")),
    ("-", "cut.jpg", None, ("pipe", "file", "jpg")),
], ids=lambda v: v if isinstance(v, str) else None)
def test_doors(tree: Path, src: str, dst: str, fmt: str | None,
               expected: tuple[str, str, str]) -> None:
    found = doors(_arg(tree, src), _arg(tree, dst), fmt)
    assert isinstance(found, Doors)
    dst_kind = expected[1].replace("new-", "")
    assert (found.src_kind, found.dst_kind, found.format) == (expected[0], dst_kind, expected[2])


@pytest.mark.parametrize(("src", "dst", "fmt", "watch", "error", "says"), [
    ("photos", "cut.png", None, False, InvalidArguments, "SRC is a folder, so DST must"),
    ("photos", "-", None, False, InvalidArguments, "SRC is a folder, so DST must"),
    ("photos", "cut.gif", None, False, InvalidArguments, "clipline writes .png, .webp"),
    ("-", "cutouts", None, False, InvalidArguments, "standard input) has no file name"),
    ("photos/a.jpg", "cut.gif", None, False, InvalidArguments, "clipline writes .png"),
    ("photos/a.jpg", "cut.txt", None, False, InvalidArguments, "clipline writes .png"),
    ("photos/a.jpg", "cut.png", "webp", False, InvalidOptions, "--format webp but DST"),
    ("photos/a.jpg", "cut.jpg", "png", False, InvalidOptions, "is a .jpg file"),
    ("photos/a.jpg", "cutouts", None, True, InvalidArguments, "--watch watches a folder"),
    ("-", "-", None, True, InvalidArguments, "--watch watches a folder"),
    ("photos", "-", None, True, InvalidArguments, "--watch watches a folder"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_doors_that_do_not_go_together_are_refused(
        tree: Path, src: str, dst: str, fmt: str | None, watch: bool,
        error: type[Exception], says: str) -> None:
    with pytest.raises(error, match=re.escape(says)):
        doors(_arg(tree, src), _arg(tree, dst), fmt, watch=watch)


def _arg(tree: Path, value: str) -> Path:
    return Path(value) if value == "-" else tree / value


class Stream:
    def __init__(self, data: bytes) -> None:
        self.data, self.asked = data, 0

    def read(self, n: int) -> bytes:
        self.asked = n
        return self.data[:n]


def test_standard_input_is_read_up_to_the_cap_and_no_further() -> None:
    assert read_capped(Stream(b"12345"), 5, "standard input") == b"12345"  # type: ignore[arg-type]
    big = Stream(b"x" * 100)
    with pytest.raises(ObjectTooLarge, match="more than 5 bytes"):
        read_capped(big, 5, "standard input")  # type: ignore[arg-type]
    assert big.asked == 6
    with pytest.raises(NotAnImage, match="standard input is empty"):
        read_capped(Stream(b""), 5, "standard input")  # type: ignore[arg-type]
