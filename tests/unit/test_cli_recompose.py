"""``clipline run --layers`` then ``clipline recompose``: parts switched on and off in a folder,
through the real entry point; the model is the fake segmenter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from clipline.cli.run import output_options, run_folder
from pipeline.adapters.segmenters.fake import FakeSegmenter
from pipeline.embedded import layers_mask_name
from pipeline.settings import Settings
from tests.unit.test_models import Cli, cli, clipline
from tests.unit.test_recompose import DISCS, discs, part_at, pixels

__all__ = ["cli"]


def cut(tmp_path: Path, *, layers: bool = True, subject: str = "main") -> Path:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "shop").mkdir(parents=True)
    (src / "shop" / "discs.png").write_bytes(discs())
    options = output_options("png", "rgba", None, False, "0", None, subject, False,
                             layers=layers)
    summary = run_folder(src, dst, options, Settings(), model="fake", threads=1,
                         show_progress=False, segmenter=FakeSegmenter())
    assert summary.ok and summary.succeeded == 1
    return dst


def parts(dst: Path) -> list[dict[str, object]]:
    from pipeline.adapters.ledger.database import make_engine
    from pipeline.adapters.ledger.sql import SqlLedger

    ledger = SqlLedger(make_engine(f"sqlite:///{dst / '.clipline' / 'ledger.sqlite3'}"))
    try:
        [job] = ledger.list_jobs()
    finally:
        ledger.close()
    assert job.result is not None
    assert job.result["layers_mask"] == layers_mask_name("shop/discs.png")
    found: list[dict[str, object]] = job.result["layers"]
    return found


def test_the_run_keeps_the_mask_in_its_state_folder_not_among_the_cut_outs(
        tmp_path: Path) -> None:
    dst = cut(tmp_path)
    assert (dst / ".clipline" / "layers" / "shop" / "discs.png.mask.png").is_file()
    assert sorted(p.name for p in (dst / "shop").iterdir()) == ["discs.png"]
    assert len(parts(dst)) == 3


def test_recompose_with_no_choice_is_the_cut_out_byte_for_byte(tmp_path: Path, cli: Cli) -> None:
    dst = cut(tmp_path)
    code, out, err = clipline(*cli, "recompose", str(dst / "shop" / "discs.png"))
    assert code == 0, err
    written = Path(out.strip())
    assert written.parent == dst / "shop" and ".layers-" in written.name
    assert written.read_bytes() == (dst / "shop" / "discs.png").read_bytes()
    assert len(err.strip().splitlines()) == 3 and "dropped (small)" in err


def test_hide_clears_a_part_and_show_brings_a_dropped_one_back(tmp_path: Path,
                                                               cli: Cli) -> None:
    dst = cut(tmp_path)
    found = parts(dst)
    medium = part_at(found, DISCS[1][0], DISCS[1][1])  # type: ignore[arg-type]
    target = tmp_path / "hidden.png"
    code, _, err = clipline(*cli, "recompose", str(dst / "shop" / "discs.png"),
                            "--hide", str(medium["id"]), "--to", str(target))
    assert code == 0, err
    image = pixels(target.read_bytes())
    assert image[DISCS[1][1], DISCS[1][0], 3] == 0 and image[DISCS[0][1], DISCS[0][0], 3] == 255
    every = ",".join(str(p["id"]) for p in found)
    code, out, err = clipline(*cli, "recompose", str(dst / "shop" / "discs.png"),
                              "--show", every)
    assert code == 0, err
    assert pixels(Path(out.strip()).read_bytes())[DISCS[2][1], DISCS[2][0], 3] == 255


def test_layered_writes_an_ora_whose_hidden_layers_are_the_parts_not_shown(
        tmp_path: Path, cli: Cli) -> None:
    import zipfile
    from xml.etree import ElementTree

    dst = cut(tmp_path)
    code, out, err = clipline(*cli, "recompose", str(dst / "shop" / "discs.png"),
                              "--layered", "ora")
    assert code == 0, err
    written = Path(out.strip())
    assert written.suffix == ".ora" and written.parent == dst / "shop"
    with zipfile.ZipFile(written) as archive:
        stack = ElementTree.fromstring(archive.read("stack.xml"))
    seen = {layer.get("name"): layer.get("visibility") for layer in stack.iter("layer")}
    roles = {f"{p['role']}": p for p in parts(dst)}
    assert seen["main"] == "visible" and seen["original"] == "hidden"
    assert [v for n, v in seen.items() if n.startswith("dropped-")] == ["hidden"]
    assert "dropped" in roles and len(seen) == len(parts(dst)) + 1


def test_layered_refuses_another_format(tmp_path: Path, cli: Cli) -> None:
    dst = cut(tmp_path)
    code, _, err = clipline(*cli, "recompose", str(dst / "shop" / "discs.png"),
                            "--layered", "tiff")
    assert code == 2 and "psd or ora" in err


def test_list_prints_the_parts_and_writes_nothing(tmp_path: Path, cli: Cli) -> None:
    dst = cut(tmp_path)
    code, out, err = clipline(*cli, "recompose", str(dst / "shop" / "discs.png"), "--list")
    assert (code, out) == (0, "")
    assert [line.split()[1] for line in err.strip().splitlines()].count("main") == 1
    assert sorted(p.name for p in (dst / "shop").iterdir()) == ["discs.png"]


@pytest.mark.parametrize(("args", "reason"), [
    (("--show", "7"), "unknown_layer"),
    (("--show", "x"), "invalid_options"),
    (("--show", "1", "--hide", "2"), "--show or --hide"),
])
def test_a_bad_choice_is_one_line_and_exit_2(tmp_path: Path, cli: Cli, args: tuple[str, ...],
                                             reason: str) -> None:
    dst = cut(tmp_path)
    code, _, err = clipline(*cli, "recompose", str(dst / "shop" / "discs.png"), *args)
    assert code == 2 and reason in err and len(err.strip().splitlines()) == 1


def test_a_run_without_layers_says_how_to_get_them(tmp_path: Path, cli: Cli) -> None:
    dst = cut(tmp_path, layers=False)
    code, _, err = clipline(*cli, "recompose", str(dst / "shop" / "discs.png"))
    assert code == 2 and "layers_not_recorded" in err and "layers=true" in err


def test_a_source_changed_since_is_refused(tmp_path: Path, cli: Cli) -> None:
    dst = cut(tmp_path)
    source = tmp_path / "src" / "shop" / "discs.png"
    os.utime(source, ns=(1, 1))
    code, _, err = clipline(*cli, "recompose", str(dst / "shop" / "discs.png"))
    assert code == 2 and "object_changed" in err and "clipline run" in err


def test_a_file_outside_any_run_is_refused(tmp_path: Path, cli: Cli) -> None:
    loose = tmp_path / "loose.png"
    loose.write_bytes(discs())
    code, _, err = clipline(*cli, "recompose", str(loose))
    assert code == 2 and "not inside the output folder" in err


def test_help_explains_show_and_hide(cli: Cli) -> None:
    code, out, _ = clipline(*cli, "recompose", "--help")
    text = " ".join(out.split())
    assert code == 0
    assert "--show 0,2 only parts 0 and 2" in text and "--hide 1" in text
    assert "without running the model" in text and "DST/.clipline/layers/" in text
    assert "--layers" in clipline(*cli, "run", "--help")[1]
