"""`clipline datasets compose` (pipeline.quality): seeded composite sets with exact alpha, built
from the synthetic sources only (tests make their own images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.quality import compositing as px
from pipeline.quality.composer import (
    DEFAULT_CLASSES,
    Composer,
    InvalidComposition,
    SetRequest,
)
from pipeline.quality.set_writer import write_set
from pipeline.quality.synthetic import SyntheticSources, write_sources
from tests.unit.test_models import clipline

SIZE = (128, 96)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSources:
    return write_sources(tmp_path_factory.mktemp("sources"), seed=7, n_objects=10,
                         n_clipart=8, n_backgrounds=8)


def _request(sources: SyntheticSources, **changes: object) -> SetRequest:
    fields: dict[str, object] = {
        "name": "t", "seed": 0, "split": "eval", "size": SIZE, "classes": DEFAULT_CLASSES,
        "per_class": 3, "eval_share": 0.5, "objects": sources.objects,
        "backgrounds": sources.backgrounds}
    fields.update(changes)
    return SetRequest(**fields)  # type: ignore[arg-type]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_same_seed_gives_byte_identical_sets_and_another_seed_another(
        sources: SyntheticSources, tmp_path: Path) -> None:
    write_set(_request(sources), tmp_path / "a")
    write_set(_request(sources), tmp_path / "b")
    write_set(_request(sources, seed=1), tmp_path / "c")
    a, b, c = (_files(tmp_path / n) for n in "abc")
    a_json, b_json = a.pop("set.json"), b.pop("set.json")
    assert json.loads(a_json)["name"] == "t"
    assert a == b and a_json == b_json
    c.pop("set.json")
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.startswith("images/"))


def test_the_set_follows_the_format_and_every_class_has_its_count(
        sources: SyntheticSources, tmp_path: Path) -> None:
    summary = write_set(_request(sources, per_class=4), tmp_path / "s")
    manifest = json.loads((tmp_path / "s" / "set.json").read_text())
    assert manifest["format"] == "clipline-set/1" and manifest["split"] == "eval"
    assert manifest["size"] == list(SIZE) and manifest["classes"] == list(DEFAULT_CLASSES)
    assert summary.counts == dict.fromkeys(DEFAULT_CLASSES, 4)
    assert len(manifest["items"]) == 16
    assert set(manifest["sources"]["objects"]) == {"photo", "clipart"}
    assert manifest["code_version"].startswith("clipline ")
    for item in manifest["items"]:
        assert {"stem", "class", "object", "background", "distractor"} <= item.keys()
        stem = item["stem"]
        found = []
        for sub in ("images", "masks", "foreground"):
            with Image.open(tmp_path / "s" / sub / f"{stem}.png") as im:
                found.append((im.mode, im.size))
        assert found == [("RGB", SIZE), ("L", SIZE), ("RGB", SIZE)]


def test_the_image_is_the_foreground_over_the_background_through_the_alpha(
        sources: SyntheticSources) -> None:
    composer = Composer(_request(sources))
    for stem, cls in composer.items():
        c = composer.compose(stem, cls)
        a = c.alpha.astype(np.float64)[..., None] / 255.0
        expected = np.round(c.foreground * a + c.background * (1 - a))
        assert np.abs(c.image.astype(np.float64) - expected).max() <= 1, stem
        assert 0 < (c.alpha > 0).mean() < 1
        assert ((c.alpha > 0) & (c.alpha < 255)).any(), "soft edges are kept"


def test_the_main_object_is_whole_inside_the_frame(sources: SyntheticSources) -> None:
    composer = Composer(_request(sources, per_class=6))
    for stem, cls in composer.items():
        c = composer.compose(stem, cls)
        x, y, w, h = c.meta["box"]
        assert x >= 0 and y >= 0 and x + w <= SIZE[0] and y + h <= SIZE[1], stem
        border = np.concatenate([c.alpha[0], c.alpha[-1], c.alpha[:, 0], c.alpha[:, -1]])
        assert border.max() == 0, stem


def test_the_blurred_distractor_is_in_the_image_but_not_in_the_ground_truth(
        sources: SyntheticSources) -> None:
    composer = Composer(_request(sources, classes=("multi",), per_class=5))
    for stem, cls in composer.items():
        c = composer.compose(stem, cls)
        assert c.meta["distractor"] is not None and c.distractor is not None
        # where the distractor lies and the main object does not, the ground truth is 0 and the
        # foreground plays no part: the image there is the background, distractor included
        outside = (c.alpha == 0) & (c.distractor > 0.2)
        assert outside.sum() > 20, stem
        assert (c.image[c.alpha == 0] == c.background[c.alpha == 0]).all()
        assert c.meta["blur_sigma"] >= 0.01 * min(SIZE)
        edge = c.distractor[(c.distractor > 0.02) & (c.distractor < 0.98)]
        assert edge.size > 50, "a wide soft edge, as out of focus"


def test_the_ground_truth_is_the_main_objects_alpha_exactly_and_the_distractor_changed_the_image(
        sources: SyntheticSources, monkeypatch: pytest.MonkeyPatch) -> None:
    request = _request(sources, classes=("multi",), per_class=4)
    composer = Composer(request)
    made = [(composer.compose(stem, cls)) for stem, cls in composer.items()]

    def no_distractor(bg: np.ndarray, placed: px.Placed, sigma: float) -> tuple[np.ndarray, ...]:
        return bg, np.zeros(bg.shape[:2])

    monkeypatch.setattr(px, "add_blurred", no_distractor)  # draws no random number
    plain = Composer(request)
    for c, (stem, cls) in zip(made, plain.items(), strict=True):
        bare = plain.compose(stem, cls)
        assert c.distractor is not None
        assert (c.alpha == bare.alpha).all() and (c.foreground == bare.foreground).all()
        zone = (c.alpha == 0) & (c.distractor > 0.3)
        assert (c.image[zone] != bare.image[zone]).any(axis=-1).mean() > 0.5, stem
        far = c.distractor < 1e-6
        assert (c.image[far] == bare.image[far]).all()


def test_train_and_eval_sets_share_no_object_and_no_background(
        sources: SyntheticSources, tmp_path: Path) -> None:
    write_set(_request(sources, split="eval", per_class=6), tmp_path / "eval")
    write_set(_request(sources, split="train", per_class=6, seed=5), tmp_path / "train")
    used = {}
    for side in ("eval", "train"):
        manifest = json.loads((tmp_path / side / "set.json").read_text())
        used[side] = {(name, f) for name, files in manifest["used"].items() for f in files}
        items = manifest["items"]
        assert {(f"objects:{i['object_source']}", i["object"]) for i in items} <= used[side]
    assert used["eval"] and used["train"]
    assert not used["eval"] & used["train"]


def test_a_class_without_its_source_and_an_unknown_class_are_refused(
        sources: SyntheticSources) -> None:
    with pytest.raises(InvalidComposition, match="people"):
        Composer(_request(sources, classes=("people",)))
    with pytest.raises(InvalidComposition, match="unknown class nope"):
        Composer(_request(sources, classes=("multi", "nope")))
    with pytest.raises(InvalidComposition, match="backgrounds photo"):
        Composer(_request(sources, classes=("product-scene",), backgrounds={}))


def test_product_plain_draws_a_shadow_outside_the_ground_truth(
        sources: SyntheticSources) -> None:
    composer = Composer(_request(sources, classes=("product-plain",), per_class=3))
    for stem, cls in composer.items():
        c = composer.compose(stem, cls)
        assert c.meta["shadow"] and c.meta["background"].startswith("studio:")
        x, y, w, h = c.meta["box"]
        below = c.background[min(y + h, SIZE[1] - 1), x : x + w].astype(float).mean()
        corner = c.background[2, 2].astype(float).mean()
        assert below < corner + 5, stem  # darker (or no lighter) under the object


# -- the command line ---------------------------------------------------------------------------


def _compose_args(sources: SyntheticSources, out: Path, *extra: str) -> list[str]:
    return ["datasets", "compose", str(out),
            "--objects", f"photo={sources.objects['photo']}",
            "--objects", f"clipart={sources.objects['clipart']}",
            "--backgrounds", f"photo={sources.backgrounds['photo']}",
            "--per-class", "2", "--size", "96x64", *extra]


def test_the_command_builds_a_set_and_refuses_a_non_empty_folder(
        sources: SyntheticSources, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "set"
    code, stdout, _ = clipline(monkeypatch, capsys, *_compose_args(sources, out))
    assert code == 0 and "8 items" in stdout
    assert len(list((out / "images").glob("*.png"))) == 8
    code, _, err = clipline(monkeypatch, capsys, *_compose_args(sources, out))
    assert code == 2 and err.startswith("clipline: invalid_composition: ")
    assert "not empty" in err and len(err.strip().splitlines()) == 1
    code, _, _ = clipline(monkeypatch, capsys, *_compose_args(sources, out, "--force",
                                                              "--seed", "3"))
    assert code == 0 and len(list((out / "images").glob("*.png"))) == 8
    assert json.loads((out / "set.json").read_text())["seed"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["set"], "no partial folder is left"


def test_force_never_removes_a_folder_that_is_not_a_set(
        sources: SyntheticSources, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, _, err = clipline(monkeypatch, capsys, *_compose_args(sources, out, "--force"))
    assert code == 2 and "holds no set.json" in err
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(("change", "reason", "words"), [
    (("--classes", "product-plain,bogus"), "invalid_composition", "unknown class bogus"),
    (("--split", "test"), "invalid_composition", "--split must be eval or train"),
    (("--size", "big"), "invalid_composition", "--size takes N or WxH"),
    (("--per-class", "0"), "invalid_composition", "--per-class must be at least 1"),
    (("--objects", "photo"), "invalid_composition", "takes KIND=DIR"),
    (("--classes", "people"), "invalid_composition", "needs --objects people=DIR"),
    (("--objects", "cat=/nonexistent"), "invalid_composition",
     "unknown object kind cat; known: clipart, people, photo"),
])
def test_a_bad_request_is_one_line_and_exit_2(
        sources: SyntheticSources, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], change: tuple[str, str], reason: str,
        words: str) -> None:
    code, _, err = clipline(monkeypatch, capsys,
                            *_compose_args(sources, tmp_path / "o", *change))
    assert code == 2
    assert err.startswith(f"clipline: {reason}: ") and words in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("problem", ["missing", "empty", "not-a-folder"])
def test_a_bad_source_folder_is_one_line_and_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        problem: str) -> None:
    folder = tmp_path / "objects"
    if problem == "empty":
        folder.mkdir()
        (folder / "readme.txt").write_text("no images")
    elif problem == "not-a-folder":
        folder.write_text("a file")
    code, _, err = clipline(monkeypatch, capsys, "datasets", "compose", str(tmp_path / "o"),
                            "--objects", f"photo={folder}", "--classes", "product-plain")
    assert code == 2 and err.startswith("clipline: invalid_sources: ")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_synth_sources_prints_the_options_compose_takes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = clipline(monkeypatch, capsys, "datasets", "synth-sources",
                            str(tmp_path / "src"), "--seed", "2", "--objects", "8",
                            "--clipart", "8", "--backgrounds", "6")
    assert code == 0
    args = out.split()
    code, out, _ = clipline(monkeypatch, capsys, "datasets", "compose", str(tmp_path / "set"),
                            *args, "--per-class", "1", "--size", "64", "--eval-share", "0.5",
                            "--split", "train", "--classes", "product-plain,illustration")
    assert code == 0, out


@pytest.mark.parametrize("where", ["a-file", "under-a-file", "not-empty"])
def test_synth_sources_wants_a_new_or_empty_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        where: str) -> None:
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "not-empty").mkdir()
    (tmp_path / "not-empty" / "old.png").write_text("stale")
    target = tmp_path / ("a-file/sub" if where == "under-a-file" else where)
    code, _, err = clipline(monkeypatch, capsys, "datasets", "synth-sources", str(target))
    assert code == 2 and err.startswith("clipline: invalid_composition: ")
    assert len(err.strip().splitlines()) == 1
