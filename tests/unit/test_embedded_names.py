"""The embedded run's naming rule, its owner check, and the file store's refusals of names:
unique by construction, never an overwrite, a typed reason for every name refused."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from pipeline.adapters.ledger.memory import MemoryLedger
from pipeline.adapters.storage.file import FileStore
from pipeline.errors import OutputCollision, OutputNameTooLong
from pipeline.jobs import JobSpec, JobStatus
from pipeline.run_files import scan, shown_name
from pipeline.run_names import OutputOwners, fold, plan_outputs
from tests.unlistable import refuse_listing


def test_an_image_alone_in_its_stem_keeps_the_plain_name() -> None:
    plan = plan_outputs(["a/b.jpg", "c.jpeg", "a/b/c.png"], ".png")
    assert plan.names == {"a/b.jpg": "a/b.png", "c.jpeg": "c.png", "a/b/c.png": "a/b/c.png"}
    assert plan.refused == {}


def test_images_sharing_a_stem_keep_their_extensions_ignoring_case() -> None:
    plan = plan_outputs(["shoe.png", "Shoe.webp", "shoe.jpg", "boot.jpg"], ".png")
    assert plan.names == {"shoe.jpg": "shoe.jpg.png", "shoe.png": "shoe.png.png",
                          "Shoe.webp": "Shoe.webp.png", "boot.jpg": "boot.png"}


def test_the_same_stem_in_two_folders_is_no_clash() -> None:
    plan = plan_outputs(["a/shoe.jpg", "b/shoe.png"], ".png")
    assert plan.names == {"a/shoe.jpg": "a/shoe.png", "b/shoe.png": "b/shoe.png"}


def test_a_name_still_wanted_twice_goes_to_the_first_source_in_sorted_order() -> None:
    plan = plan_outputs(["shoe.png", "shoe.jpg.png", "shoe.jpg"], ".png")
    assert plan.names == {"shoe.jpg": "shoe.jpg.png", "shoe.png": "shoe.png.png"}
    assert plan.refused == {
        "shoe.jpg.png": "output shoe.jpg.png is already the cut-out of shoe.jpg"}
    with pytest.raises(OutputCollision, match=r"already the cut-out of shoe\.jpg"):
        plan.name_for("shoe.jpg.png")


def test_folders_that_differ_only_in_case_cannot_share_a_cut_out() -> None:
    plan = plan_outputs(["a/x.jpg", "A/x.jpg"], ".png")
    assert plan.names == {"A/x.jpg": "A/x.jpg.png"}  # one stem ignoring case: both keep .jpg
    assert plan.refused == {"a/x.jpg": "output a/x.jpg.png is already the cut-out of A/x.jpg"}


def test_a_cut_out_named_like_a_folder_of_other_cut_outs_is_refused() -> None:
    plan = plan_outputs(["shoe.jpg", "shoe.png/side.jpg"], ".png")
    assert plan.names == {"shoe.png/side.jpg": "shoe.png/side.png"}
    assert plan.refused == {"shoe.jpg": "output shoe.png is a folder of other cut-outs"}


def test_names_do_not_depend_on_the_order_files_are_found() -> None:
    keys = ["shoe.jpg", "shoe.png", "shoe.jpg.png", "Shoe.webp", "a/b.jpg"]
    assert plan_outputs(keys, ".webp") == plan_outputs(list(reversed(keys)), ".webp")


def test_names_are_compared_ignoring_case_and_unicode_normalisation() -> None:
    assert fold("Café.PNG") == fold("cafe\u0301.png")
    plan = plan_outputs(["Caf\u00e9.jpg", "cafe\u0301.png"], ".png")
    assert len(plan.names) == 2 and len({fold(n) for n in plan.names.values()}) == 2


def test_an_output_recorded_by_another_source_is_not_overwritten() -> None:
    loads = []

    def load() -> list[tuple[str, tuple[str, str]]]:
        loads.append(1)
        return [("shoe.png", ("/a", "shoe.jpg")), ("boot.png", ("/a", "boot.jpg")),
                ("boot.png", ("/b", "boot.jpg"))]  # /b wrote boot.png last

    owners = OutputOwners(load)
    owners.check("shoe.png", ("/b", "shoe.jpg"), exists=False)  # nothing to overwrite
    assert loads == []  # and no look-up needed
    owners.check("Shoe.PNG", ("/a", "shoe.jpg"), exists=True)  # its own cut-out
    with pytest.raises(OutputCollision, match=r"cut-out of shoe\.jpg in /a"):
        owners.check("shoe.png", ("/b", "shoe.jpg"), exists=True)
    owners.check("boot.png", ("/b", "boot.jpg"), exists=True)
    owners.record("shoe.png", ("/b", "shoe.jpg"))
    owners.check("shoe.png", ("/b", "shoe.jpg"), exists=True)
    assert loads == [1]


def test_the_file_store_writes_a_name_of_255_bytes(tmp_path: Path) -> None:
    name = "é" * 125 + "x.png"  # 255 bytes of UTF-8
    FileStore().put(str(tmp_path), name, b"data", content_type="image/png")
    assert (tmp_path / name).read_bytes() == b"data"
    assert os.listdir(tmp_path) == [name]


def test_a_name_too_long_for_the_file_system_is_a_permanent_typed_failure(
        tmp_path: Path) -> None:
    with pytest.raises(OutputNameTooLong, match="256 bytes"):
        FileStore().put(str(tmp_path), "x" * 252 + ".png", b"d", content_type="image/png")
    assert os.listdir(tmp_path) == []


def test_a_folder_in_the_way_of_an_output_is_a_collision(tmp_path: Path) -> None:
    (tmp_path / "shoe.png").mkdir()
    with pytest.raises(OutputCollision, match="in the way"):
        FileStore().put(str(tmp_path), "shoe.png", b"d", content_type="image/png")
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(OutputCollision, match="in the way"):
        FileStore().put(str(tmp_path), "plain/shoe.png", b"d", content_type="image/png")


def test_scan_refuses_names_the_ledger_cannot_hold_one_by_one(tmp_path: Path) -> None:
    for name in [b"good.jpg", b"caf\xe9.jpg", b"new\nline.png", b"notes.txt", b".hidden.jpg"]:
        (Path(os.fsdecode(tmp_path)) / os.fsdecode(name)).write_bytes(b"x")
    os.symlink(tmp_path / "nowhere", tmp_path / "broken.jpg")
    found = scan(tmp_path)
    assert list(found.files) == ["good.jpg"]
    assert found.files["good.jpg"].startswith("1:")
    assert found.skipped == 1
    refused = {shown_name(r.name): r.reason for r in found.refused}
    assert refused == {"caf\\xe9.jpg": "invalid_file_name", "new\\x0aline.png":
                       "invalid_file_name", "broken.jpg": "unreadable_file"}


def test_scan_reports_a_folder_it_cannot_list(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    refuse_listing(monkeypatch, "locked")
    found = scan(tmp_path)
    assert list(found.files) == ["b.jpg"]
    assert [(r.name, r.reason, r.message) for r in found.refused] == [
        ("locked/", "unreadable_folder", "cannot list the folder: Permission denied")]


def test_superseded_jobs_move_to_the_history_batch_in_the_memory_ledger_too() -> None:
    ledger = MemoryLedger()
    batch, history = uuid.uuid4(), uuid.uuid4()
    ledger.submit_many([JobSpec("/in", "a.jpg", "1:1"), JobSpec("/in", "a.jpg", "1:2")],
                       batch_id=batch)
    (old,) = [row for row in ledger.source_index(batch) if row[2] == "1:1"]
    assert (old[1], old[3]) == ("a.jpg", JobStatus.QUEUED)
    assert ledger.move_to_batch([old[0]], history) == 1
    assert [r[2] for r in ledger.source_index(batch)] == ["1:2"]
    assert ledger.events(old[0])[-1].action == "moved"


def test_a_cut_out_file_gets_the_mode_the_umask_gives_a_new_file(tmp_path: Path) -> None:
    FileStore().put(str(tmp_path), "a/b.png", b"png", content_type="image/png")
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "a" / "b.png").stat().st_mode & 0o777 == 0o666 & ~mask
