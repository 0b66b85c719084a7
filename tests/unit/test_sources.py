"""Source folders for composite sets (pipeline.quality.sources): the split by file, the skip
reasons, and the procedural sources that stand in for the Debian packages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.quality.sources import (
    InvalidSources,
    Pool,
    SourceFile,
    Unusable,
    load_background,
    load_cutout,
    pool_for,
    scan,
    side_of,
)
from pipeline.quality.synthetic import write_sources


def _rgba(h: int, w: int, alpha: int | np.ndarray) -> Image.Image:
    px = np.zeros((h, w, 4), np.uint8)
    px[..., :3] = 120
    px[..., 3] = alpha
    return Image.fromarray(px, "RGBA")


def _disc(size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    d = np.hypot(yy - size / 2, xx - size / 2) - size * 0.4
    return np.clip((0.5 - d / 2.0) * 255, 0, 255).astype(np.uint8)


def test_the_side_is_a_stable_hash_of_the_relative_path() -> None:
    names = [f"folder/item-{i}.png" for i in range(2000)]
    sides = [side_of(n, 0.3) for n in names]
    assert sides == [side_of(n, 0.3) for n in names]
    assert 0.25 < sides.count("eval") / len(sides) < 0.35
    assert side_of("a.png", 0.0) == "train" and side_of("a.png", 1.0) == "eval"
    # a larger share only moves files from train to eval, never back
    assert all(side_of(n, 0.5) == "eval" for n, s in zip(names, sides, strict=True) if s == "eval")
    with pytest.raises(ValueError):
        side_of("a.png", 1.5)


def test_scan_finds_images_recursively_in_order_with_their_sides(tmp_path: Path) -> None:
    (tmp_path / "b" / "c").mkdir(parents=True)
    for rel in ("z.png", "b/c/y.JPG", "b/x.webp", "b/notes.txt"):
        (tmp_path / rel).write_bytes(b"")
    found = scan(tmp_path, 0.5)
    assert [f.rel for f in found] == ["b/c/y.JPG", "b/x.webp", "z.png"]
    assert all(f.side == side_of(f.rel, 0.5) and f.path == tmp_path / f.rel for f in found)


@pytest.mark.parametrize(("setup", "words"), [
    ("missing", "does not exist"),
    ("file", "is not a folder"),
    ("empty", "holds no .png"),
])
def test_scan_refuses_a_folder_that_cannot_feed_a_set(tmp_path: Path, setup: str,
                                                       words: str) -> None:
    folder = tmp_path / "src"
    if setup == "file":
        folder.write_text("x")
    elif setup == "empty":
        folder.mkdir()
    with pytest.raises(InvalidSources, match=words):
        scan(folder, 0.3)


@pytest.mark.parametrize(("name", "make", "reason"), [
    ("rgb.png", lambda: Image.new("RGB", (100, 100), "red"), "no_alpha"),
    ("opaque.png", lambda: _rgba(100, 100, 255), "opaque"),
    ("clear.png", lambda: _rgba(100, 100, 0), "too_small"),
    ("tiny.png", lambda: Image.fromarray(np.dstack([np.full((20, 20, 3), 90, np.uint8),
                                                     _disc(20)]), "RGBA"), "too_small"),
    ("smoke.png", lambda: _rgba(100, 100, 100), "translucent"),
    ("bomb.png", lambda: Image.new("1", (9000, 5000)), "too_many_pixels"),
])
def test_an_object_that_cannot_serve_is_skipped_with_its_reason(
        tmp_path: Path, name: str, make: object, reason: str) -> None:
    image = make()  # type: ignore[operator]
    image.save(tmp_path / name)
    with pytest.raises(Unusable, match=f"^{reason}"):
        load_cutout(SourceFile(tmp_path, name, "eval"), min_side=64, max_side=256)


def test_not_an_image_is_skipped_too(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_bytes(b"not a png at all")
    with pytest.raises(Unusable, match="not_an_image"):
        load_cutout(SourceFile(tmp_path, "fake.png", "eval"), min_side=64, max_side=256)


def test_a_cutout_is_cropped_to_its_visible_part_and_bounded(tmp_path: Path) -> None:
    canvas = np.zeros((600, 800, 4), np.uint8)
    canvas[100:500, 200:600, :3] = 200
    canvas[100:500, 200:600, 3] = _disc(400)
    Image.fromarray(canvas, "RGBA").save(tmp_path / "o.png")
    cut = load_cutout(SourceFile(tmp_path, "o.png", "eval"), min_side=64, max_side=200)
    assert cut.dtype == np.uint8 and cut.shape[2] == 4 and max(cut.shape[:2]) <= 200
    assert cut[..., 3].max() == 255 and cut[0].max() > 0 and cut[:, 0].max() > 0


def test_a_background_is_rgb_and_downscaled(tmp_path: Path) -> None:
    Image.new("RGB", (1600, 1200), (10, 20, 30)).save(tmp_path / "bg.jpg", quality=95)
    bg = load_background(SourceFile(tmp_path, "bg.jpg", "eval"), min_side=128)
    assert bg.shape == (256, 341, 3) and bg.dtype == np.uint8
    Image.new("RGB", (40, 40)).save(tmp_path / "small.png")
    with pytest.raises(Unusable, match="too_small"):
        load_background(SourceFile(tmp_path, "small.png", "eval"), min_side=128)


def test_a_pool_skips_unusable_files_once_and_records_why(tmp_path: Path) -> None:
    _rgba(100, 100, 255).save(tmp_path / "a-opaque.png")
    Image.fromarray(np.dstack([np.full((100, 100, 3), 90, np.uint8), _disc(100)]),
                    "RGBA").save(tmp_path / "b-good.png")
    pool: Pool[np.ndarray] = Pool("objects:photo", tmp_path, scan(tmp_path, 0.5),
                                  lambda f: load_cutout(f, min_side=64, max_side=128))
    rng = np.random.default_rng(0)
    drawn = [pool.draw(rng)[0].rel for _ in range(5)]
    assert drawn == ["b-good.png"] * 5
    assert [(s.rel, s.reason.split(":")[0]) for s in pool.skipped] == [("a-opaque.png", "opaque")]
    assert pool.used == ["b-good.png"] and pool.summary() == "opaque 1"


def test_a_pool_with_nothing_usable_or_nothing_on_its_side_is_refused(tmp_path: Path) -> None:
    _rgba(100, 100, 255).save(tmp_path / "opaque.png")
    pool: Pool[np.ndarray] = Pool("objects:photo", tmp_path, scan(tmp_path, 0.5),
                                  lambda f: load_cutout(f, min_side=64, max_side=128))
    with pytest.raises(InvalidSources, match=r"no usable file for objects:photo.*opaque 1"):
        pool.draw(np.random.default_rng(0))
    side = side_of("opaque.png", 0.5)
    other = "train" if side == "eval" else "eval"
    with pytest.raises(InvalidSources, match=f"no file falls on the {other} side"):
        pool_for("objects:photo", tmp_path, other, 0.5, lambda f: f)


def test_synthetic_sources_are_deterministic_and_usable(tmp_path: Path) -> None:
    a = write_sources(tmp_path / "a", seed=4, n_objects=3, n_clipart=2, n_backgrounds=2)
    write_sources(tmp_path / "b", seed=4, n_objects=3, n_clipart=2, n_backgrounds=2)
    write_sources(tmp_path / "c", seed=5, n_objects=3, n_clipart=2, n_backgrounds=2)

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.png")}

    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")
    assert len(files(tmp_path / "a")) == 7
    for kind, folder in a.objects.items():
        for f in scan(folder, 0.5):
            cut = load_cutout(f, min_side=64, max_side=512)
            alpha = cut[..., 3]
            assert ((alpha > 0) & (alpha < 255)).any(), f"{kind} {f.rel} has soft edges"
    for f in scan(a.backgrounds["photo"], 0.5):
        assert load_background(f, min_side=128).ndim == 3
