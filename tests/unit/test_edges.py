"""Clean edges: foreground estimation on a drawn composite with a known answer.

A red disc with a soft edge over green: the soft pixels blend red and green, so on a new
background the cut-out shows a green halo. With clean edges the re-composite error (the eval's
own metric) falls, alpha is byte-identical and opaque pixels keep their bytes.
"""

from __future__ import annotations

import io

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from pipeline.adapters.segmenters.fake import FakeSegmenter
from pipeline.imaging.compose import compose
from pipeline.imaging.edges import decontaminate, soft_band
from pipeline.options import OutputOptions
from pipeline.process import cut_out
from pipeline.quality.metrics import recomposite_error

RED = np.array([220, 30, 30], np.float32)
GREEN = np.array([20, 180, 40], np.float32)

# pymatting compiles its kernels with numba on first use in a fresh environment (over a
# minute on 2 CPUs, cached afterwards): more than the default per-test limit allows.
pytestmark = pytest.mark.timeout(600)


def drawn(side: int = 96, edge: float = 8.0) -> tuple[npt.NDArray[np.uint8],
                                                    npt.NDArray[np.uint8]]:
    """(rgba of the composite, its true alpha): a red disc, soft over ``edge`` px, over green."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    radius = np.hypot(x - side / 2, y - side / 2)
    alpha = np.clip((side * 0.3 - radius) / edge + 0.5, 0.0, 1.0)
    a8 = np.rint(alpha * 255).astype(np.uint8)
    a = a8.astype(np.float32)[..., None] / 255.0
    rgb = np.rint(RED * a + GREEN * (1 - a)).astype(np.uint8)
    return np.dstack([rgb, np.full((side, side), 255, np.uint8)]), a8


def true_red(shape: tuple[int, ...]) -> npt.NDArray[np.uint8]:
    return np.broadcast_to(RED.astype(np.uint8), (*shape, 3)).copy()


@pytest.mark.parametrize("work_side", [512, 32])
def test_clean_edges_lower_the_recomposite_error(work_side: int) -> None:
    rgba, alpha = drawn()
    kept = compose(rgba, alpha, OutputOptions(), bbox=None).pixels
    cleaned = compose(decontaminate(rgba, alpha, work_side=work_side), alpha, OutputOptions(),
                      bbox=None).pixels
    before = recomposite_error(kept, true_red(alpha.shape), alpha)
    after = recomposite_error(cleaned, true_red(alpha.shape), alpha)
    assert after < before / 2


def test_alpha_and_opaque_pixels_are_unchanged() -> None:
    rgba, alpha = drawn()
    out = decontaminate(rgba, alpha)
    assert out.dtype == np.uint8 and out.shape == rgba.shape
    assert np.array_equal(out[..., 3], rgba[..., 3])
    outside = ~soft_band(alpha)
    assert np.array_equal(out[outside], rgba[outside])
    assert not np.array_equal(out[soft_band(alpha)], rgba[soft_band(alpha)])


def test_a_hard_mask_is_left_alone() -> None:
    rgba, _ = drawn()
    hard = np.where(np.arange(96)[None, :] < 40, 255, 0).astype(np.uint8).repeat(96, axis=0)
    assert decontaminate(rgba, hard) is rgba


def test_mismatched_shapes_are_refused() -> None:
    rgba, alpha = drawn()
    with pytest.raises(ValueError, match="do not match"):
        decontaminate(rgba, alpha[:-1])


def test_the_option_reaches_the_cut_out_and_keeps_its_alpha() -> None:
    rgba, _ = drawn(side=128)
    buf = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(buf, "PNG")
    data = buf.getvalue()
    keep = cut_out(data, OutputOptions(), FakeSegmenter(), model="fake")
    clean = cut_out(data, OutputOptions(edges="clean"), FakeSegmenter(), model="fake")
    kept, cleaned = (np.asarray(Image.open(io.BytesIO(c.data))) for c in (keep, clean))
    assert np.array_equal(kept[..., 3], cleaned[..., 3])
    opaque = kept[..., 3] == 255
    assert np.array_equal(kept[opaque], cleaned[opaque])
    assert clean.metadata["options"]["edges"] == "clean"
    assert "edges" in clean.metadata["timings_ms"]
    assert "edges" not in keep.metadata["timings_ms"]
