"""OnnxSegmenter on tiny models shaped like U²-Net-p (tests/modelkit.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from pipeline.adapters.segmenters.onnx_graph import sample_images, to_uint8_nhwc
from pipeline.adapters.segmenters.onnx_runtime import OnnxSegmenter
from pipeline.errors import ModelError
from pipeline.models import uint8_form
from pipeline.ports import Segmenter
from tests.modelkit import INPUT, rembg_reference, tiny_spec, u2net_like, uint8_identity

SPEC = tiny_spec()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return u2net_like(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return sample_images(SPEC.input_size, 5)


def reference_masks(model: Path, images: np.ndarray) -> np.ndarray:
    """What rembg does with this model, one image at a time, all outputs fetched."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    masks = []
    for x in rembg_reference(images, SPEC):
        pred = session.run(None, {INPUT: x[None]})[0][:, 0]
        masks.append(((pred - pred.min()) / (pred.max() - pred.min()))[0])
    return np.stack(masks)


def test_is_a_segmenter(model: Path) -> None:
    segmenter = OnnxSegmenter(model, SPEC, intra_op_threads=1)
    assert isinstance(segmenter, Segmenter)
    assert segmenter.input_size == (32, 32)


def test_predict_matches_rembgs_pipeline(model: Path, images: np.ndarray) -> None:
    segmenter = OnnxSegmenter(model, SPEC, intra_op_threads=1)
    masks = segmenter.predict(images)
    assert masks.shape == (5, 32, 32) and masks.dtype == np.float32
    assert masks.flags.c_contiguous and masks.flags.writeable
    np.testing.assert_allclose(masks, reference_masks(model, images), atol=1e-5, rtol=0)
    # min-max per image: every mask spans exactly [0, 1]
    np.testing.assert_allclose(masks.min(axis=(1, 2)), 0.0, atol=1e-7)
    np.testing.assert_allclose(masks.max(axis=(1, 2)), 1.0, atol=1e-6)


def test_fixed_batch_of_one_runs_image_by_image(model: Path, images: np.ndarray) -> None:
    segmenter = OnnxSegmenter(model, SPEC, intra_op_threads=1)
    assert segmenter.fixed_batch == 1 and not segmenter.takes_uint8
    together = segmenter.predict(images)
    apart = np.concatenate([segmenter.predict(images[i : i + 1]) for i in range(len(images))])
    np.testing.assert_array_equal(together, apart)


def test_fixed_batch_of_two_pads_the_last_chunk(tmp_path: Path, images: np.ndarray) -> None:
    path = u2net_like(tmp_path / "b2.onnx", batch=2)
    segmenter = OnnxSegmenter(path, SPEC, intra_op_threads=1)
    assert segmenter.fixed_batch == 2
    masks = segmenter.predict(images[:3])
    assert masks.shape == (3, 32, 32)
    single = OnnxSegmenter(u2net_like(tmp_path / "b1.onnx"), SPEC).predict(images[:3])
    np.testing.assert_allclose(masks, single, atol=1e-6)


def test_dynamic_batch_runs_in_one_call(tmp_path: Path, images: np.ndarray) -> None:
    path = u2net_like(tmp_path / "dyn.onnx", batch="N")
    segmenter = OnnxSegmenter(path, SPEC, intra_op_threads=1)
    assert segmenter.fixed_batch is None
    single = OnnxSegmenter(u2net_like(tmp_path / "b1.onnx"), SPEC).predict(images)
    np.testing.assert_allclose(segmenter.predict(images), single, atol=1e-6)


def test_uint8_graph_skips_numpy_normalisation(
    tmp_path: Path, model: Path, images: np.ndarray
) -> None:
    rewritten = tmp_path / "tiny.uint8.onnx"
    to_uint8_nhwc(model, rewritten, SPEC)
    segmenter = OnnxSegmenter(rewritten, uint8_form(SPEC), intra_op_threads=1)
    assert segmenter.takes_uint8 and segmenter.fixed_batch is None
    np.testing.assert_allclose(
        segmenter.predict(images), OnnxSegmenter(model, SPEC).predict(images), atol=1e-5
    )


def test_uint8_graph_without_folded_min_max_gets_it_here(tmp_path: Path) -> None:
    spec = tiny_spec((8, 8))
    images = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    images[:, :, :, 0] = np.arange(64, dtype=np.uint8).reshape(8, 8) + 100
    plain = uint8_identity(tmp_path / "plain.onnx", postprocess=None)
    folded = uint8_identity(tmp_path / "folded.onnx", postprocess="min_max")
    # the graph gives red / 255 in [100/255, 163/255]; the spec asks for min-max
    stretched = OnnxSegmenter(plain, spec).predict(images)
    assert stretched.min() == 0.0 and stretched.max() == pytest.approx(1.0)
    # marked as folded: the graph's answer is taken as final
    as_is = OnnxSegmenter(folded, spec).predict(images)
    assert as_is.min() == pytest.approx(100 / 255) and as_is.max() == pytest.approx(163 / 255)


def test_empty_batch(model: Path) -> None:
    out = OnnxSegmenter(model, SPEC).predict(np.empty((0, 32, 32, 3), dtype=np.uint8))
    assert out.shape == (0, 32, 32) and out.dtype == np.float32


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((1, 32, 32, 3), np.float32), ((1, 16, 32, 3), np.uint8), ((32, 32, 3), np.uint8),
     ((1, 32, 32, 4), np.uint8)],
)  # fmt: skip
def test_predict_rejects_wrong_input(model: Path, shape: tuple[int, ...], dtype: type) -> None:
    with pytest.raises(ValueError, match=r"expected \[N, 32, 32, 3\] uint8"):
        OnnxSegmenter(model, SPEC).predict(np.zeros(shape, dtype=dtype))


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot load the model"):
        OnnxSegmenter(tmp_path / "absent.onnx", SPEC)


def test_garbage_file_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x00\x01 this is not a protobuf" * 10)
    with pytest.raises(ModelError, match="cannot load the model"):
        OnnxSegmenter(path, SPEC)


def test_input_size_mismatch_is_a_model_error(tmp_path: Path) -> None:
    path = u2net_like(tmp_path / "small.onnx", size=(16, 16))
    with pytest.raises(ModelError, match=r"spec tiny wants \[N, 3, H, W\] float32 with H, W = 32"):
        OnnxSegmenter(path, SPEC)


def test_output_index_out_of_range(model: Path) -> None:
    from dataclasses import replace

    with pytest.raises(ModelError, match="has 7 outputs, the spec wants #9"):
        OnnxSegmenter(model, replace(SPEC, output_index=9))


def test_run_failure_is_a_model_error(tmp_path: Path, images: np.ndarray) -> None:
    # declares a dynamic batch but reshapes to a fixed batch of 1 inside: fails at batch 3
    path = u2net_like(tmp_path / "baked.onnx", batch="N", bake_batch_into_reshape=True)
    segmenter = OnnxSegmenter(path, SPEC)
    assert segmenter.predict(images[:1]).shape == (1, 32, 32)
    with pytest.raises(ModelError, match="the model failed to run on a batch of 3"):
        segmenter.predict(images[:3])
