"""training.data: on-the-fly training batches from the composer, shaped as the deployed model's
input, balanced by class, deterministic and resumable, drawn only from train-side files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.imaging.decode import model_input_from_rgba
from pipeline.models import U2NETP
from pipeline.quality.composer import Composer, SetRequest
from pipeline.quality.sources import side_of
from pipeline.quality.synthetic import SyntheticSources, write_sources
from training.data import (
    PAIRS,
    InvalidStream,
    Sources,
    TrainStream,
    augment_item,
    quotas,
)

SIZE = (64, 64)
COMPOSE = ((96, 96), (112, 84))
SHARE = 0.5
MIX = {"product-plain": 1.0, "illustration": 1.0, "multi": 2.0}
NORM = U2NETP.normalisation


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSources:
    return write_sources(tmp_path_factory.mktemp("sources"), seed=3, n_objects=10,
                         n_clipart=8, n_backgrounds=8)


def _sources(s: SyntheticSources, **extra: object) -> Sources:
    return Sources(objects=s.objects, backgrounds=s.backgrounds, **extra)  # type: ignore[arg-type]


def _stream(s: SyntheticSources, seed: int = 0, **kw: object) -> TrainStream:
    args: dict[str, object] = {"size": SIZE, "compose_sizes": COMPOSE, "eval_share": SHARE}
    args.update(kw)
    return TrainStream(_sources(s), seed=seed, **args)  # type: ignore[arg-type]


def _same(a: object, b: object) -> bool:
    return bool(np.array_equal(a.images, b.images) and np.array_equal(a.alpha, b.alpha)  # type: ignore[attr-defined]
                and a.classes == b.classes and a.meta == b.meta)  # type: ignore[attr-defined]


def test_a_batch_has_the_model_input_shapes_dtypes_and_ranges(synthetic: SyntheticSources) -> None:
    batch = _stream(synthetic).batch(MIX, 4, 1.0)
    assert batch.images.shape == (4, 3, *SIZE) and batch.images.dtype == np.float32
    assert batch.alpha.shape == (4, 1, *SIZE) and batch.alpha.dtype == np.float32
    assert batch.images.flags.c_contiguous and np.isfinite(batch.images).all()
    assert batch.alpha.min() >= 0.0 and batch.alpha.max() <= 1.0
    assert (batch.alpha.reshape(4, -1).max(axis=1) > 0.5).all()  # every item has a subject
    assert len(batch.classes) == len(batch.meta) == 4


def test_the_default_input_is_u2netps_320_square(synthetic: SyntheticSources) -> None:
    batch = TrainStream(_sources(synthetic), seed=0, eval_share=SHARE).batch(MIX, 1, 0.5)
    assert batch.images.shape == (1, 3, 320, 320) and batch.alpha.shape == (1, 1, 320, 320)


def test_every_batch_holds_the_classes_in_the_mixs_proportions(
        synthetic: SyntheticSources) -> None:
    stream = _stream(synthetic)
    for _ in range(3):
        counts = Counter(stream.batch(MIX, 8, 0.0).classes)
        assert counts == {"product-plain": 2, "illustration": 2, "multi": 4}


def test_quotas_rotate_the_remainder_so_running_totals_are_exact() -> None:
    mix = {"a": 1.0, "b": 1.0, "c": 1.0, "z": 0.0}
    served: Counter[str] = Counter()
    for k in range(1, 7):
        take = quotas(mix, 4, served, 4 * (k - 1))
        assert sum(take.values()) == 4 and take["z"] == 0
        assert all(v in (1, 2) for c, v in take.items() if c != "z")
        served.update(take)
        if (4 * k) % 3 == 0:
            assert served["a"] == served["b"] == served["c"] == 4 * k // 3
    odd = {"a": 0.7, "b": 0.2, "c": 0.1}
    served = Counter()
    for k in range(1, 21):
        served.update(quotas(odd, 5, served, 5 * (k - 1)))
        assert all(abs(served[c] - 5 * k * w) < 1.0 for c, w in odd.items())


def test_a_class_of_weight_zero_never_appears(synthetic: SyntheticSources) -> None:
    stream = _stream(synthetic)
    mix = {"product-plain": 1.0, "illustration": 0.0, "multi": 1.0}
    seen = [c for _ in range(3) for c in stream.batch(mix, 5, 0.3).classes]
    assert "illustration" not in seen and set(seen) == {"product-plain", "multi"}


def test_the_same_seed_gives_identical_batches_and_another_seed_others(
        synthetic: SyntheticSources) -> None:
    a, b, c = _stream(synthetic, 5), _stream(synthetic, 5), _stream(synthetic, 6)
    for _ in range(2):
        x, y, z = (s.batch(MIX, 4, 1.0) for s in (a, b, c))
        assert _same(x, y)
        assert not np.array_equal(x.images, z.images)


def test_restore_continues_the_stream_exactly(synthetic: SyntheticSources) -> None:
    first = _stream(synthetic, 9)
    for _ in range(3):
        first.batch(MIX, 4, 1.0)
    saved = json.loads(json.dumps(first.state()))
    expected = [first.batch(MIX, 4, 1.0), first.batch({"illustration": 1.0}, 3, 0.5)]
    resumed = _stream(synthetic, 9)
    resumed.restore(saved)
    got = [resumed.batch(MIX, 4, 1.0), resumed.batch({"illustration": 1.0}, 3, 0.5)]
    assert all(_same(e, g) for e, g in zip(expected, got, strict=True))
    assert resumed.state() == first.state()


def test_restore_refuses_a_state_saved_from_other_sources(
        synthetic: SyntheticSources, tmp_path: Path) -> None:
    other = write_sources(tmp_path, seed=4, n_objects=6, n_clipart=4, n_backgrounds=4)
    saved = _stream(other).state()
    with pytest.raises(InvalidStream, match="differ"):
        _stream(synthetic).restore(saved)
    with pytest.raises(InvalidStream, match="version"):
        _stream(synthetic).restore({**saved, "version": 0})


def test_no_eval_side_file_is_ever_drawn(synthetic: SyntheticSources) -> None:
    stream = _stream(synthetic, 1)
    mix = {"product-plain": 1.0, "product-scene": 1.0, "illustration": 1.0, "multi": 1.0}
    metas = [m for _ in range(6) for m in stream.batch(mix, 8, 0.0).meta]
    drawn = {m["object"] for m in metas} | {m["distractor"] for m in metas if m["distractor"]}
    drawn |= {m["background"] for m in metas if m["background_source"] == "photo"}
    assert len(drawn) >= 6
    assert all(side_of(rel, SHARE) == "train" for rel in drawn)


def test_images_are_normalised_exactly_as_u2netps_to_nchw(synthetic: SyntheticSources) -> None:
    images = _stream(synthetic).batch(MIX, 4, 1.0).images
    mean = np.asarray(NORM.mean, np.float32)[None, :, None, None]
    std = np.asarray(NORM.std, np.float32)[None, :, None, None]
    unit = images * std + mean  # x / peak: the brightest value of each image is 1
    assert np.allclose(unit.reshape(4, -1).max(axis=1), 1.0, atol=1e-5)
    for i in range(4):
        errors = [np.abs(unit[i] * p - np.round(unit[i] * p)).max() for p in range(1, 256)]
        peak = 1 + int(np.argmin(errors))
        pixels = np.round(unit[i] * peak).astype(np.uint8).transpose(1, 2, 0)
        np.testing.assert_array_equal(NORM.to_nchw(pixels[None]), images[i : i + 1])


def test_augment_zero_gives_the_composers_pixels_resized_as_deployed(
        synthetic: SyntheticSources) -> None:
    stream = _stream(synthetic, 2, compose_sizes=((96, 96),))
    batch = stream.batch(MIX, 6, 0.0)
    composer = Composer(SetRequest(
        name="x", seed=stream.composer_seed, split="train", size=(96, 96),
        classes=tuple(stream.classes), per_class=1, eval_share=SHARE,
        objects=synthetic.objects, backgrounds=synthetic.backgrounds))
    items = [composer.compose(f"s{i}", c) for i, c in enumerate(batch.classes)]
    pixels = np.stack([model_input_from_rgba(
        np.dstack([it.image, np.full((96, 96), 255, np.uint8)]), SIZE) for it in items])
    np.testing.assert_array_equal(batch.images, NORM.to_nchw(pixels))
    alpha = np.stack([np.asarray(Image.fromarray(it.alpha.astype(np.float32) / 255, "F")
                                 .resize(SIZE[::-1], Image.Resampling.BILINEAR))
                      for it in items])
    np.testing.assert_allclose(batch.alpha[:, 0], np.clip(alpha, 0, 1), atol=1e-6)
    assert [it.meta["object"] for it in items] == [m["object"] for m in batch.meta]


def test_the_augment_strength_changes_pixels_not_which_items_are_drawn(
        synthetic: SyntheticSources) -> None:
    plain = _stream(synthetic, 4).batch(MIX, 6, 0.0)
    strong = _stream(synthetic, 4).batch(MIX, 6, 1.0)
    assert plain.meta == strong.meta
    assert not np.array_equal(plain.images, strong.images)


def test_augmentation_flips_image_and_alpha_together_and_recolours_only_the_image() -> None:
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, :30] = (200, 120, 60)
    alpha = np.zeros((40, 60), np.uint8)
    alpha[:, :30] = 255
    flips = 0
    for seed in range(12):
        out, a = augment_item(np.random.default_rng(seed), image, alpha, 1.0)
        left_bright = out[:, :30].mean() > out[:, 30:].mean()
        assert left_bright == (a[:, :30].mean() > a[:, 30:].mean())
        assert set(np.unique(a)) == {0, 255}
        flips += not left_bright
    assert 0 < flips < 12
    same, a0 = augment_item(np.random.default_rng(0), image, alpha, 0.0)
    assert same is image and a0 is alpha


def test_photo_mask_pairs_are_served_as_class_pairs(
        synthetic: SyntheticSources, tmp_path: Path) -> None:
    pairs = tmp_path / "real"
    (pairs / "images").mkdir(parents=True)
    (pairs / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(
            pairs / "images" / f"p{i}.jpg")
        mask = np.zeros((90, 120), np.uint8)
        mask[20:70, 30:90] = 255
        Image.fromarray(mask).save(pairs / "masks" / f"p{i}.png")
    stream = TrainStream(_sources(synthetic, pairs=(pairs,)), seed=0, size=SIZE,
                         compose_sizes=COMPOSE, eval_share=SHARE)
    batch = stream.batch({PAIRS: 1.0, "illustration": 1.0}, 4, 0.0)
    assert Counter(batch.classes) == {PAIRS: 2, "illustration": 2}
    got = [(m, batch.alpha[i, 0]) for i, m in enumerate(batch.meta) if m["class"] == PAIRS]
    assert all(m["mask"].startswith("masks/p") for m, _ in got)
    assert all(abs(a.mean() - 50 * 60 / (90 * 120)) < 0.03 for _, a in got)


def test_photos_batch_gives_normalised_crops(synthetic: SyntheticSources) -> None:
    stream = TrainStream(_sources(synthetic, photos=(synthetic.backgrounds["photo"],)),
                         seed=0, size=SIZE, compose_sizes=COMPOSE, eval_share=SHARE)
    photos = stream.photos_batch(3)
    assert photos.shape == (3, 3, *SIZE) and photos.dtype == np.float32
    assert not np.array_equal(photos[0], photos[1])
    with pytest.raises(InvalidStream, match="photos"):
        _stream(synthetic).photos_batch(1)


def test_the_fingerprint_follows_train_side_files_only(tmp_path: Path) -> None:
    s = write_sources(tmp_path, seed=5, n_objects=6, n_clipart=4, n_backgrounds=4)
    before = _stream(s).fingerprint()
    assert before == _stream(s, 1).fingerprint() and len(before) == 64
    files = sorted(s.backgrounds["photo"].iterdir())
    evals = [f for f in files if side_of(f.name, SHARE) == "eval"]
    trains = [f for f in files if side_of(f.name, SHARE) == "train"]
    with evals[0].open("ab") as fh:
        fh.write(b"\0")
    assert _stream(s).fingerprint() == before
    with trains[0].open("ab") as fh:
        fh.write(b"\0")
    assert _stream(s).fingerprint() != before


@pytest.mark.parametrize(("mix", "match"), [
    ({"nonsense": 1.0}, "unknown class"),
    ({"illustration": 0.0}, "not all 0"),
    ({"illustration": -1.0}, "at least 0"),
    ({"people": 1.0}, "no sources for class people"),
    ({PAIRS: 1.0}, "no sources for class pairs"),
])
def test_a_mix_that_cannot_be_served_is_refused(
        synthetic: SyntheticSources, mix: dict[str, float], match: str) -> None:
    with pytest.raises(InvalidStream, match=match):
        _stream(synthetic).batch(mix, 2, 0.0)
