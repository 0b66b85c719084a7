"""Subject selection, alpha at source size, bbox, fraction and uncertainty."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from scipy import ndimage

from pipeline.errors import EmptyMask, ModelError
from pipeline.focus import component_focus, grey, relative_focus
from pipeline.subject import (
    BBOX_ALPHA,
    CONFIDENCE_MIN,
    FOCUS_RATIO,
    alpha_bbox,
    find_subject,
    uncertainty,
    upscale_mask,
)

MODEL = 320


def _disc(cy: float, cx: float, radius: float, size: int = MODEL) -> npt.NDArray[np.float32]:
    yy, xx = np.mgrid[0:size, 0:size]
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2).astype(np.float32)


def _soft(mask: npt.NDArray[np.float32], sigma: float = 1.5) -> npt.NDArray[np.float32]:
    return np.asarray(ndimage.gaussian_filter(mask, sigma), dtype=np.float32)


def test_empty_mask_is_reported_not_raised() -> None:
    subject = find_subject(np.zeros((MODEL, MODEL), np.float32), (640, 480))
    assert subject.empty is True
    assert subject.bbox is None
    assert subject.fraction == 0.0
    assert subject.uncertainty == 0.0
    assert subject.alpha.shape == (480, 640)
    assert subject.to_metadata()["empty"] is True


def test_empty_mask_raises_when_strict() -> None:
    with pytest.raises(EmptyMask):
        find_subject(np.zeros((MODEL, MODEL), np.float32), (640, 480), strict_empty=True)


def test_faint_mask_counts_as_empty_when_strict() -> None:
    faint = np.full((MODEL, MODEL), (BBOX_ALPHA - 1) / 255, np.float32)
    with pytest.raises(EmptyMask):
        find_subject(faint, (100, 100), strict_empty=True)


def test_full_mask_covers_the_frame() -> None:
    subject = find_subject(np.ones((MODEL, MODEL), np.float32), (1000, 750), strict_empty=True)
    assert subject.empty is False
    assert subject.bbox == (0, 0, 1000, 750)
    assert subject.fraction == 1.0
    assert subject.uncertainty == 0.0
    assert subject.size == (1000, 750)
    assert int(subject.alpha.min()) == 255


def test_alpha_truncates_like_rembg_at_model_size() -> None:
    mask = np.array([[0.0, 0.4999, 1.0, 0.999]], np.float32)
    assert upscale_mask(mask, (4, 1)).tolist() == [[0, 127, 255, 254]]


def test_upscale_stays_close_to_rembg_lanczos() -> None:
    mask = _soft(_disc(160, 150, 90) + _disc(60, 270, 25))
    ours = upscale_mask(mask, (2048, 1536))
    lanczos = np.asarray(
        Image.fromarray((mask * 255).astype(np.uint8)).resize(
            (2048, 1536), Image.Resampling.LANCZOS
        )
    )
    a, b = ours >= 128, lanczos >= 128
    assert (a & b).sum() / (a | b).sum() > 0.99
    assert np.abs(ours.astype(int) - lanczos).max() <= 10


@pytest.mark.parametrize("size", [(2048, 2048), (3000, 2000), (320, 321), (5, 5)])
def test_enlarging_stays_within_one_level_of_pillows_bilinear(size: tuple[int, int]) -> None:
    mask = np.random.default_rng(size[0]).random((320, 320) if size[0] > 5 else (1, 1))
    small = (mask * 255).astype(np.uint8)
    pillow = np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BILINEAR))
    ours = upscale_mask(mask.astype(np.float32), size)
    assert ours.shape == (size[1], size[0]) and ours.dtype == np.uint8
    assert np.abs(ours.astype(int) - pillow).max() <= 1


@pytest.mark.parametrize("size", [(100, 80), (37, 1999), (319, 320)])
def test_shrinking_an_axis_antialiases_as_pillow_does(size: tuple[int, int]) -> None:
    mask = np.random.default_rng(7).random((320, 320)).astype(np.float32)
    small = (mask * 255).astype(np.uint8)
    pillow = np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BILINEAR))
    assert np.array_equal(upscale_mask(mask, size), pillow)


def test_bbox_is_in_source_pixels() -> None:
    mask = np.zeros((MODEL, MODEL), np.float32)
    mask[80:160, 40:200] = 1.0  # x 40..199, y 80..159 of 320 -> x 1/8..5/8, y 1/4..1/2
    subject = find_subject(mask, (640, 1280))
    assert subject.bbox is not None
    x, y, w, h = subject.bbox
    assert abs(x - 80) <= 2 and abs(y - 320) <= 4
    assert abs(w - 320) <= 4 and abs(h - 320) <= 8


def test_bbox_ignores_faint_residue() -> None:
    alpha = np.full((50, 60), 3, np.uint8)
    alpha[0, :] = BBOX_ALPHA - 1
    alpha[10:20, 30:40] = 255
    assert alpha_bbox(alpha) == (30, 10, 10, 10)


def test_bbox_of_a_model_mask_with_residue_across_the_background() -> None:
    mask = np.full((MODEL, MODEL), 3 / 255 + 1e-4, np.float32)  # alpha 3 everywhere
    mask[100:200, 100:200] = 1.0
    subject = find_subject(mask, (MODEL, MODEL))
    assert int(subject.alpha[0, 0]) == 3
    assert subject.bbox == (100, 100, 100, 100)


def test_fraction_is_mean_opacity() -> None:
    mask = np.zeros((10, 10), np.float32)
    mask[:5] = 1.0
    mask[5:] = 0.5
    subject = find_subject(mask, (10, 10))
    assert subject.fraction == pytest.approx((50 * 255 + 50 * 127) / 100 / 255)


def test_uncertainty_high_for_a_mask_of_halves() -> None:
    assert uncertainty(np.full((MODEL, MODEL), 0.5, np.float32)) == 1.0
    assert find_subject(np.full((MODEL, MODEL), 0.5, np.float32), (64, 64)).uncertainty == 1.0


def test_uncertainty_zero_for_a_crisp_mask() -> None:
    assert find_subject(_disc(160, 160, 100), (640, 640)).uncertainty == 0.0


def test_uncertainty_counts_only_the_ambiguous_band() -> None:
    mask = np.zeros((10, 10), np.float32)
    mask[0, :4] = [0.05, 0.1, 0.5, 0.9]  # 0.05 and 0.1 unmarked, 0.5 ambiguous, 0.9 confident
    mask[1, :] = 1.0
    assert uncertainty(mask) == pytest.approx(1 / 12)


def test_uncertainty_of_a_soft_edged_subject_is_low() -> None:
    assert 0.0 < find_subject(_soft(_disc(160, 160, 100)), (320, 320)).uncertainty < 0.15


def test_policy_all_keeps_every_blob() -> None:
    mask = _disc(160, 160, 80) + _disc(40, 40, 8)
    subject = find_subject(mask, (MODEL, MODEL))
    assert subject.dropped == ()
    assert subject.bbox is not None and subject.bbox[:2] == (32, 32)


def test_policy_main_drops_a_small_blob_with_its_reason() -> None:
    mask = _soft(_disc(180, 180, 80) + _disc(40, 40, 8))  # area ratio 1:100
    subject = find_subject(mask, (640, 640), policy="main")
    assert [d.reason for d in subject.dropped] == ["small"]
    dropped = subject.dropped[0]
    x, y, w, h = dropped.bbox
    assert abs(x - 64) <= 4 and abs(y - 64) <= 4 and abs(w - 34) <= 4 and abs(h - 34) <= 4
    assert dropped.area_fraction == pytest.approx(np.pi * 8**2 / MODEL**2, rel=0.15)
    # the small blob and its soft halo are gone; the big one is untouched
    assert int(subject.alpha[40:100, 40:100].max()) == 0
    assert int(subject.alpha[360, 360]) == 255
    assert subject.bbox is not None
    assert abs(subject.bbox[0] - 2 * 100) <= 6
    assert subject.to_metadata()["dropped"] == [
        {
            "reason": "small",
            "bbox": list(dropped.bbox),
            "area_fraction": round(dropped.area_fraction, 6),
            "relative_focus": None,
            "confidence": round(dropped.confidence or 0.0, 6),
        }
    ]
    assert dropped.confidence is not None and 0.5 <= dropped.confidence <= 1.0


def test_policy_main_drops_a_mid_sized_blob_cut_by_the_frame() -> None:
    mask = _disc(180, 160, 90)
    mask[0:40, 0:50] = 1.0  # 2000 px at the corner: over 5%, under 25% of the disc's ~25400
    subject = find_subject(mask, (MODEL, MODEL), policy="main")
    assert [d.reason for d in subject.dropped] == ["cut_by_frame"]
    assert subject.dropped[0].bbox == (0, 0, 50, 40)
    assert int(subject.alpha[:40, :50].max()) == 0


def test_policy_main_keeps_a_large_second_subject() -> None:
    mask = _disc(160, 90, 60) + _disc(160, 240, 55)  # a pair of shoes
    subject = find_subject(mask, (MODEL, MODEL), policy="main")
    assert subject.dropped == ()
    assert subject.bbox is not None and subject.bbox[2] > 200


def test_policy_main_keeps_a_mid_sized_blob_inside_the_frame() -> None:
    mask = _disc(200, 160, 90) + _disc(50, 50, 30)  # 11% of the disc, away from the edge
    subject = find_subject(mask, (MODEL, MODEL), policy="main")
    assert subject.dropped == ()


def test_policy_main_with_a_single_subject_changes_nothing() -> None:
    mask = _soft(_disc(160, 160, 100))
    main = find_subject(mask, (500, 400), policy="main")
    everything = find_subject(mask, (500, 400))
    assert np.array_equal(main.alpha, everything.alpha)


def test_mask_of_the_wrong_shape_is_a_model_error() -> None:
    with pytest.raises(ModelError):
        find_subject(np.zeros((1, MODEL, MODEL), np.float32), (10, 10))


def test_mask_with_nan_is_a_model_error() -> None:
    mask = np.zeros((MODEL, MODEL), np.float32)
    mask[5, 5] = np.nan
    with pytest.raises(ModelError):
        find_subject(mask, (10, 10))


def test_metadata_is_json_ready() -> None:
    mask = np.zeros((MODEL, MODEL), np.float32)
    mask[100:200, 100:200] = 1.0
    mask[100:200, 99] = 0.5
    metadata = find_subject(mask, (MODEL, MODEL)).to_metadata()
    assert metadata == {
        "bbox": [99, 100, 101, 100],
        "foreground_fraction": round((10_000 * 255 + 100 * 127) / MODEL**2 / 255, 6),
        "uncertainty": round(100 / 10_100, 6),
        "empty": False,
        "dropped": [],
    }


# Focus (pipeline.focus) and confidence: drawn scenes. A sharp object is noise (texture) or a
# flat fill with a crisp outline; a blurred one is the whole object layer (texture and outline)
# blurred, as a defocused lens does and as the composer draws its `multi` distractor.

Disc = tuple[float, float, float, float]


def _scene(
    discs: list[Disc], seed: int = 0, flat: dict[int, float] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    """(mask, model input) for discs (cy, cx, radius, blur sigma) on a grey ground (128).

    A disc is uniform noise, or (``flat``: disc index -> grey level) one flat grey."""
    rng = np.random.default_rng(seed)
    image = np.full((MODEL, MODEL), 128.0, np.float32)
    mask = np.zeros((MODEL, MODEL), np.float32)
    for index, (cy, cx, radius, sigma) in enumerate(discs):
        disc = _disc(cy, cx, radius)
        if flat is not None and index in flat:
            texture = np.full((MODEL, MODEL), flat[index], np.float32)
        else:
            texture = rng.uniform(0, 255, (MODEL, MODEL)).astype(np.float32)
        layer, alpha = texture * disc, disc
        if sigma > 0:
            layer = np.asarray(ndimage.gaussian_filter(layer, sigma), np.float32)
            alpha = np.asarray(ndimage.gaussian_filter(alpha, sigma), np.float32)
        image = layer + (1.0 - alpha) * image
        mask = np.maximum(mask, disc)
    rgb = np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., np.newaxis], 3, axis=2)
    return _soft(mask), rgb


def test_blurred_second_object_is_dropped_out_of_focus() -> None:
    mask, image = _scene([(160, 100, 70, 0.0), (160, 240, 50, 6.0)])
    subject = find_subject(mask, (MODEL, MODEL), policy="main", image=image)
    assert [d.reason for d in subject.dropped] == ["out_of_focus"]
    dropped = subject.dropped[0]
    assert dropped.relative_focus is not None and dropped.relative_focus < FOCUS_RATIO
    assert subject.alpha[160, 240] == 0 and subject.alpha[160, 100] == 255
    assert subject.kept is not None and [k.role for k in subject.kept] == ["main"]
    assert subject.kept[0].portability == pytest.approx(1.0)
    meta = subject.to_metadata()
    assert meta["dropped"][0]["reason"] == "out_of_focus"
    assert meta["kept"][0]["role"] == "main"


def test_two_sharp_objects_of_similar_size_are_both_kept() -> None:
    mask, image = _scene([(160, 90, 60, 0.0), (160, 230, 58, 0.0)], seed=1)
    subject = find_subject(mask, (MODEL, MODEL), policy="main", image=image)
    assert subject.dropped == ()
    assert subject.kept is not None and [k.role for k in subject.kept] == ["main", "kept"]
    other = subject.kept[1]
    assert other.relative_focus == pytest.approx(1.0, abs=0.2)
    assert 0.8 < other.portability <= 1.0


def test_large_blurred_object_loses_main_to_a_smaller_sharp_one() -> None:
    # The reference is the sharpest part of at least MAIN_AREA_RATIO of the largest's area
    # (here 0.37): the large blurred disc is measured against the sharp one and dropped.
    mask, image = _scene([(160, 100, 90, 6.0), (160, 250, 55, 0.0)], seed=2)
    subject = find_subject(mask, (MODEL, MODEL), policy="main", image=image)
    assert [d.reason for d in subject.dropped] == ["out_of_focus"]
    assert subject.kept is not None and [k.role for k in subject.kept] == ["main"]
    main = subject.kept[0]
    assert main.relative_focus == 1.0 and main.relative_area == pytest.approx(0.37, abs=0.03)
    assert main.bbox[0] > 180
    assert subject.alpha[160, 100] == 0 and subject.alpha[160, 250] == 255


def test_a_sharp_part_far_smaller_than_a_blurred_one_is_no_reference() -> None:
    # Under MAIN_AREA_RATIO (0.15 here), the sharp part is a detail: the largest stays main and
    # the small part, sharper than it, is kept.
    mask, image = _scene([(160, 110, 90, 6.0), (160, 260, 35, 0.0)], seed=2)
    subject = find_subject(mask, (MODEL, MODEL), policy="main", image=image)
    assert subject.dropped == ()
    assert subject.kept is not None and [k.role for k in subject.kept] == ["main", "kept"]
    small = subject.kept[1]
    assert small.relative_focus is not None and small.relative_focus > 1.0
    assert subject.alpha[160, 110] == 255 and subject.alpha[160, 260] == 255


def test_a_flat_filled_clip_art_part_is_not_out_of_focus() -> None:
    # A flat fill has no gradient inside (the interior measure read it as a blur), but a crisp
    # outline: measured on its edge band it scores 0.4 of a main part of pure noise (the
    # strongest texture there is), where a blur scores under 0.01.
    mask, image = _scene([(160, 100, 70, 0.0), (160, 240, 50, 0.0)], flat={1: 20.0}, seed=3)
    subject = find_subject(mask, (MODEL, MODEL), policy="main", image=image)
    assert subject.dropped == ()
    assert subject.kept is not None and [k.role for k in subject.kept] == ["main", "kept"]
    flat = subject.kept[1]
    assert flat.relative_focus is not None and flat.relative_focus > FOCUS_RATIO
    assert subject.alpha[160, 240] == 255


def test_a_flat_main_part_and_a_flat_second_part_are_both_kept() -> None:
    mask, image = _scene([(160, 100, 70, 0.0), (160, 240, 50, 0.0)], flat={0: 230.0, 1: 20.0})
    subject = find_subject(mask, (MODEL, MODEL), policy="main", image=image)
    assert subject.dropped == ()


def test_a_part_the_model_is_unsure_of_is_dropped_low_confidence() -> None:
    mask, image = _scene([(160, 100, 70, 0.0), (160, 240, 50, 0.0)], seed=4)
    mask[_disc(160, 240, 52) > 0] *= 0.7  # mean mask 0.7 over the second part
    subject = find_subject(mask, (MODEL, MODEL), policy="main", image=image)
    assert [d.reason for d in subject.dropped] == ["low_confidence"]
    dropped = subject.dropped[0]
    assert dropped.confidence is not None and dropped.confidence < CONFIDENCE_MIN
    assert subject.alpha[160, 240] == 0 and subject.alpha[160, 100] == 255
    assert subject.to_metadata()["dropped"][0]["confidence"] == pytest.approx(0.7, abs=0.02)


def test_an_unsure_main_part_is_kept() -> None:
    mask, image = _scene([(160, 160, 90, 0.0)], seed=5)
    subject = find_subject(mask * 0.6, (MODEL, MODEL), policy="main", image=image)
    assert subject.dropped == ()
    assert subject.kept is not None and subject.kept[0].confidence == pytest.approx(0.6, abs=0.02)


def test_focus_of_a_flat_fill_is_its_outline_and_of_a_blur_near_zero() -> None:
    mask, image = _scene(
        [(80, 80, 50, 0.0), (80, 240, 50, 0.0), (240, 160, 50, 6.0)], flat={1: 20.0}
    )
    labels, count = ndimage.label(mask >= 0.5)
    focus = relative_focus(component_focus(image, labels, count), 0)
    noise, flat, blurred = focus.tolist()
    assert noise == 1.0 and flat > FOCUS_RATIO and blurred < 0.01


def test_without_the_image_focus_is_not_scored() -> None:
    mask, _ = _scene([(160, 100, 70, 0.0), (160, 240, 50, 6.0)])
    subject = find_subject(mask, (MODEL, MODEL), policy="main")
    assert subject.dropped == ()
    assert subject.kept is not None and all(k.relative_focus is None for k in subject.kept)


def test_policy_all_ignores_focus_and_keeps_its_metadata() -> None:
    mask, image = _scene([(160, 100, 70, 0.0), (160, 240, 50, 6.0)])
    with_image = find_subject(mask, (640, 480), image=image)
    without = find_subject(mask, (640, 480))
    assert np.array_equal(with_image.alpha, without.alpha)
    assert np.array_equal(with_image.alpha, upscale_mask(mask, (640, 480)))
    assert with_image.to_metadata() == without.to_metadata()
    assert set(without.to_metadata()) == {
        "bbox", "foreground_fraction", "uncertainty", "empty", "dropped"
    }


def test_focus_flat_main_component_makes_every_relative_focus_one() -> None:
    labels = np.zeros((20, 20), np.int32)
    labels[2:10, 2:10] = 1
    labels[12:18, 12:18] = 2
    image = np.full((20, 20, 3), 90, np.uint8)  # no outline either: the ground is 90 too
    image[12:18, 12:18] = np.random.default_rng(0).integers(0, 255, (6, 6, 3), dtype=np.uint8)
    assert relative_focus(component_focus(image, labels, 2), 0).tolist() == [1.0, 1.0]


def test_focus_rejects_a_bad_image_shape() -> None:
    with pytest.raises(ValueError):
        grey(np.zeros((4, 4, 1), np.uint8), (4, 4))
