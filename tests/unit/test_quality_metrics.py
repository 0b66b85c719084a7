"""The metrics of `clipline eval` against cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.quality.metrics import (
    HIGHER_IS_BETTER,
    alpha_mae,
    boundary,
    boundary_f,
    edge_band,
    iou,
    new_background,
    recomposite_band_error,
    recomposite_error,
    score,
)


def _square(top: int, left: int, side: int = 10, size: int = 40) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[top:top + side, left:left + side] = 255
    return mask


def test_identical_masks_score_perfectly() -> None:
    mask = _square(10, 10)
    assert iou(mask, mask) == 1.0
    assert alpha_mae(mask, mask) == 0.0
    assert boundary_f(mask, mask) == 1.0


def test_disjoint_masks_have_no_overlap_and_no_matching_edge() -> None:
    a, b = _square(0, 0), _square(25, 25)
    assert iou(a, b) == 0.0
    assert boundary_f(a, b) == 0.0
    assert alpha_mae(a, b) == pytest.approx(200 / 1600)  # 2 x 100 pixels wrong of 1,600


def test_two_empty_masks_agree() -> None:
    empty = np.zeros((8, 8), np.uint8)
    assert iou(empty, empty) == 1.0
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(empty, _square(2, 2, 4, 8)) == 0.0


def test_a_one_pixel_shift_keeps_the_boundary_within_tolerance_but_not_the_overlap() -> None:
    truth, pred = _square(10, 10), _square(10, 11)
    # Overlap 10 rows x 9 columns = 90; union 100 + 100 - 90 = 110.
    assert iou(pred, truth) == pytest.approx(90 / 110)
    assert boundary_f(pred, truth) == 1.0
    assert boundary_f(pred, truth, tolerance=0.0) < 1.0


def test_iou_thresholds_at_one_half() -> None:
    truth = _square(10, 10)
    assert iou(np.where(truth > 0, 128, 0).astype(np.uint8), truth) == 1.0
    assert iou(np.where(truth > 0, 127, 0).astype(np.uint8), truth) == 0.0


def test_mae_is_taken_on_the_raw_alpha() -> None:
    faint = np.full((4, 4), 51, np.uint8)  # 0.2 everywhere: no normalisation hides it
    assert alpha_mae(faint, np.zeros((4, 4), np.uint8)) == pytest.approx(0.2)


def test_the_boundary_is_one_pixel_wide_and_the_frame_is_not_an_edge() -> None:
    inner = boundary(_square(10, 10) > 0)
    assert int(inner.sum()) == 36  # the 10x10 square's outer ring: 100 - 8x8
    assert not boundary(np.ones((5, 5), bool)).any()


def test_recomposite_error_of_a_constructed_case() -> None:
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((2, 2, 3), np.uint8)
    blue[..., 2] = 255
    opaque = np.full((2, 2), 255, np.uint8)
    perfect = np.dstack([red, opaque])
    assert recomposite_error(perfect, red, opaque, blue) == 0.0
    # Nothing cut out: the user sees blue where red belongs; |(0,0,1) - (1,0,0)| = (1,0,1).
    nothing = np.zeros((2, 2, 4), np.uint8)
    assert recomposite_error(nothing, red, opaque, blue) == pytest.approx(2 / 3)
    # Half alpha (128): seen = red*128/255 + blue*127/255 against pure red.
    half = np.dstack([red, np.full((2, 2), 128, np.uint8)])
    assert recomposite_error(half, red, opaque, blue) == pytest.approx(2 * 127 / 255 / 3, abs=1e-6)


def test_recomposite_error_sees_spill_where_the_alpha_is_right() -> None:
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    green = np.zeros((1, 1, 3), np.uint8)
    green[..., 1] = 255
    soft = np.full((1, 1), 102, np.uint8)  # 0.4
    grey = np.full((1, 1, 3), 128, np.uint8)
    spilled = np.dstack([green, soft])  # right alpha, the old background's colour
    # 0.4 x |green - red| = 0.4 x (1, 1, 0): mean 0.4 x 2/3.
    assert recomposite_error(spilled, red, soft, grey) == pytest.approx(0.4 * 2 / 3, abs=1e-6)


def test_the_new_background_is_fixed_and_sized() -> None:
    bg = new_background(48, 64)
    assert bg.shape == (48, 64, 3) and bg.dtype == np.uint8
    assert tuple(bg[0, 0]) == (0, 140, 150) and tuple(bg[-1, -1]) == (220, 40, 150)
    assert np.array_equal(bg, new_background(48, 64))


def test_score_gives_all_four_and_refuses_mismatched_shapes() -> None:
    truth = _square(10, 10)
    colour = np.full((40, 40, 3), 200, np.uint8)
    scores = score(np.dstack([colour, truth]), colour, truth)
    assert scores.as_dict() == {"iou": 1.0, "mae": 0.0, "boundary_f": 1.0, "recomposite": 0.0,
                                "recomposite_band": 0.0}
    assert set(scores.as_dict()) == set(HIGHER_IS_BETTER)
    with pytest.raises(ValueError, match="one size"):
        iou(truth, truth[:-1])


def test_the_edge_band_of_a_binary_truth_is_its_outline_within_three_pixels() -> None:
    band = edge_band(_square(10, 10, side=20))  # rows/cols 10..29
    assert band[10, 20] and band[7, 20] and band[12, 20]  # on, 3 px outside, 2 px inside
    assert not band[6, 20] and not band[20, 20] and not band[0, 0]  # 4 px out, centre, corner
    # 3 px out and in (rows 7..13 of 26 rows), less the 5 pixels per outer corner beyond 3 px.
    assert band.sum() == 26 * 26 - 12 * 12 - 4 * 5


def test_the_edge_band_takes_every_soft_pixel_of_the_truth() -> None:
    truth = np.zeros((40, 40), np.uint8)
    truth[5, 5] = 1  # far from any outline: the truth has no pixel >= 128
    assert np.array_equal(edge_band(truth), truth > 0)
    assert not edge_band(np.zeros((40, 40), np.uint8)).any()
    assert not edge_band(np.full((40, 40), 255, np.uint8)).any()  # the frame is no edge


def test_band_error_is_the_frame_error_without_the_flat_pixels() -> None:
    truth = _square(10, 10, side=20)
    red = np.zeros((40, 40, 3), np.uint8)
    red[..., 0] = 255
    grey = np.full((40, 40, 3), 128, np.uint8)
    hard = np.dstack([red, truth])
    assert recomposite_band_error(hard, red, truth, grey) == 0.0
    # The outline's ring (3 px inside and out) got the old grey background's colour, alpha right.
    band = edge_band(truth)
    spilled = hard.copy()
    spilled[band & (truth == 255), :3] = 128
    inside = int((band & (truth == 255)).sum())
    per_pixel = (127 + 128 + 128) / 255 / 3  # |grey - red| over RGB
    assert recomposite_band_error(spilled, red, truth, grey) == pytest.approx(
        per_pixel * inside / band.sum(), abs=1e-6)
    assert recomposite_error(spilled, red, truth, grey) == pytest.approx(
        per_pixel * inside / 1600, abs=1e-6)  # the same error, diluted by the whole frame


def test_band_error_is_the_same_pixels_whatever_the_cut_out() -> None:
    truth = _square(10, 10, side=20)
    colour = np.full((40, 40, 3), 200, np.uint8)
    haze = truth.copy()
    haze[haze == 0] = 40  # a faint haze over the whole background: outside the band it is unseen
    one_px_off = np.roll(truth, 1, axis=1)
    band_haze = recomposite_band_error(np.dstack([colour, haze]), colour, truth)
    frame_haze = recomposite_error(np.dstack([colour, haze]), colour, truth)
    assert 0.0 < band_haze < frame_haze  # the band holds fewer background pixels than the frame
    assert recomposite_band_error(np.dstack([colour, one_px_off]), colour, truth) > \
        recomposite_error(np.dstack([colour, one_px_off]), colour, truth)


def test_a_truth_without_an_edge_has_no_band_error() -> None:
    empty = np.zeros((40, 40), np.uint8)
    colour = np.zeros((40, 40, 3), np.uint8)
    assert recomposite_band_error(np.dstack([colour, _square(0, 0)]), colour, empty) == 0.0
