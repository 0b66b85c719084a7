"""Refined edges: the guided filter over a trimap, on drawn composites with a known alpha.

A sharp red disc over green, and a mask like a model's (the true alpha blurred, as an upscaled
320² mask is): refinement should pull the mask's ramp back to the disc's edge, leave the
definite regions at 0 and 255, and reach the cut-out through ``edges=refine``.
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from scipy import ndimage

from pipeline.adapters.segmenters.fake import FakeSegmenter
from pipeline.imaging.refine import guided_filter, refine_alpha, unknown_band
from pipeline.options import OutputOptions
from pipeline.process import cut_out
from pipeline.quality.metrics import alpha_mae, edge_band

# refine=clean afterwards: pymatting may compile with numba on first use (see test_edges.py).
pytestmark = pytest.mark.timeout(600)

RED = np.array([220, 30, 30], np.float32)
GREEN = np.array([20, 180, 40], np.float32)


def drawn(side: int = 128, blur: float = 3.0) -> tuple[npt.NDArray[np.uint8],
                                                      npt.NDArray[np.uint8],
                                                      npt.NDArray[np.uint8]]:
    """(rgb, true alpha, a model-like mask): a red disc with a 1 px soft edge over green; the
    mask is the truth blurred by a Gaussian of ``blur`` px."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    alpha = np.clip(side * 0.3 - np.hypot(x - side / 2, y - side / 2) + 0.5, 0.0, 1.0)
    a = alpha[..., None]
    rgb = np.rint(RED * a + GREEN * (1 - a)).astype(np.uint8)
    mask = ndimage.gaussian_filter(alpha, blur)
    return rgb, np.rint(alpha * 255).astype(np.uint8), np.rint(mask * 255).astype(np.uint8)


@pytest.mark.parametrize("work_side", [512, 64])
def test_refinement_brings_a_blurred_mask_back_to_the_edge(work_side: int) -> None:
    rgb, truth, mask = drawn()
    refined = refine_alpha(rgb, mask, work_side=work_side)
    band = edge_band(truth)
    before = np.abs(mask.astype(np.int16) - truth)[band].mean()
    after = np.abs(refined.astype(np.int16) - truth)[band].mean()
    assert after < before / 2
    assert alpha_mae(refined, truth) < alpha_mae(mask, truth) / 2


def test_off_the_band_alpha_is_snapped_to_the_mask_side() -> None:
    rgb, _, mask = drawn()
    refined = refine_alpha(rgb, mask, band_px=4)
    off = ~unknown_band(mask, 4)
    assert refined.dtype == np.uint8 and refined.shape == mask.shape
    assert np.array_equal(refined[off], np.where(mask[off] >= 128, 255, 0))


def test_the_band_is_the_outline_widened_both_ways() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[:, 10:] = 255
    band = unknown_band(mask, 2)
    assert band[:, 8:12].all() and not band[:, :8].any() and not band[:, 12:].any()
    assert not unknown_band(np.zeros((8, 8), np.uint8), 2).any()
    assert not unknown_band(np.full((8, 8), 200, np.uint8), 2).any()


def test_a_mask_without_an_outline_is_only_snapped() -> None:
    rgb, _, _ = drawn(side=32)
    faint = np.full((32, 32), 40, np.uint8)
    assert not refine_alpha(rgb, faint).any()
    assert (refine_alpha(rgb, np.full((32, 32), 200, np.uint8)) == 255).all()


def test_the_guided_filter_keeps_a_constant_and_smooths_like_a_box_when_eps_is_large() -> None:
    rng = np.random.default_rng(0)
    guide = rng.random((40, 40, 3), dtype=np.float32)
    flat = np.full((40, 40), 0.25, np.float32)
    assert np.allclose(guided_filter(guide, flat, 3, 1e-3), 0.25, atol=1e-4)
    src = rng.random((40, 40), dtype=np.float32)
    box = ndimage.uniform_filter(ndimage.uniform_filter(src, 7, mode="reflect"), 7,
                                 mode="reflect")
    # eps >> the guide's variance: a -> 0, q -> mean of mean(p), a box filter applied twice.
    assert np.allclose(guided_filter(guide, src, 3, 1e6), box, atol=1e-4)


def test_mismatched_shapes_and_bad_parameters_are_refused() -> None:
    rgb, _, mask = drawn(side=32)
    with pytest.raises(ValueError, match="do not match"):
        refine_alpha(rgb, mask[:-1])
    with pytest.raises(ValueError, match="positive"):
        refine_alpha(rgb, mask, radius=0)
    with pytest.raises(ValueError, match="positive"):
        refine_alpha(rgb, mask, eps=0.0)


def _png(rgb: npt.NDArray[np.uint8]) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def test_the_option_reaches_the_cut_out() -> None:
    rgb, _, _ = drawn()
    data = _png(rgb)
    keep = cut_out(data, OutputOptions(), FakeSegmenter(), model="fake")
    refine = cut_out(data, OutputOptions(edges="refine"), FakeSegmenter(), model="fake")
    kept, refined = (np.asarray(Image.open(io.BytesIO(c.data))) for c in (keep, refine))
    assert not np.array_equal(kept[..., 3], refined[..., 3])
    assert refine.metadata["options"]["edges"] == "refine"
    assert "edges" in refine.metadata["timings_ms"]
    options = OutputOptions.parse({"edges": "refine"})
    assert OutputOptions.parse(options.normalised()) == options


def test_refine_with_the_alpha_channel_alone_refines_the_mask() -> None:
    # Unlike clean, refine changes alpha: a grey mask asked with refine is a different job.
    options = OutputOptions.parse({"channels": "alpha", "edges": "refine"})
    assert options.edges == "refine"
    rgb, _, _ = drawn()
    data = _png(rgb)
    plain = cut_out(data, OutputOptions(channels="alpha"), FakeSegmenter(), model="fake")
    refined = cut_out(data, options, FakeSegmenter(), model="fake")
    assert Image.open(io.BytesIO(refined.data)).mode == "L"
    assert plain.data != refined.data
