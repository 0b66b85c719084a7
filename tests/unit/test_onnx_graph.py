"""The uint8 NHWC rewrite: the form Triton serves, checked against the original graph."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from pipeline.adapters.segmenters import onnx_graph
from pipeline.adapters.segmenters.onnx_graph import (
    Verification,
    export_uint8,
    sample_images,
    to_uint8_nhwc,
    verify,
)
from pipeline.adapters.segmenters.onnx_runtime import OnnxSegmenter
from pipeline.errors import ModelError
from pipeline.models import resolve, uint8_form
from tests.modelkit import tiny_spec, u2net_like

SPEC = tiny_spec()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return sample_images(SPEC.input_size, 8)


@pytest.fixture(params=[11, 18], ids=["opset11", "opset18"])
def original(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return u2net_like(tmp_path / "tiny.onnx", opset=request.param)


@pytest.fixture
def rewritten(original: Path, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.uint8.onnx"
    to_uint8_nhwc(original, path, SPEC)
    return path


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_rewrite_matches_the_original_at_each_batch_size(
    original: Path, rewritten: Path, images: np.ndarray, batch: int
) -> None:
    expected = OnnxSegmenter(original, SPEC).predict(images[:batch])
    session = ort.InferenceSession(str(rewritten), providers=["CPUExecutionProvider"])
    (mask,) = session.run(["mask"], {"image": images[:batch]})
    assert mask.shape == (batch, 32, 32) and mask.dtype == np.float32
    np.testing.assert_allclose(mask, expected, atol=1e-5, rtol=0)


def test_rewritten_graph_has_the_stable_interface(rewritten: Path) -> None:
    model = onnx.load(str(rewritten))
    graph = model.graph
    (image,) = graph.input
    (mask,) = graph.output
    assert image.name == "image" and image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == [
        "batch", 32, 32, 3
    ]  # fmt: skip
    assert mask.name == "mask" and mask.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in mask.type.tensor_type.shape.dim] == [
        "batch", 32, 32
    ]  # fmt: skip
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata == {"clipline.form": "uint8_nhwc", "clipline.postprocess": "min_max"}
    assert len(graph.value_info) == 0
    # the six side outputs and their convolutions are pruned, with their weights
    assert [n.op_type for n in graph.node].count("Sigmoid") == 1
    assert not any(init.name.startswith("ws") for init in graph.initializer)
    ops = [n.op_type for n in graph.node]
    assert ops[:7] == ["Cast", "ReduceMax", "Max", "Div", "Sub", "Div", "Transpose"]


def test_rewrite_keeps_a_dynamic_batch_original(tmp_path: Path, images: np.ndarray) -> None:
    original = u2net_like(tmp_path / "dyn.onnx", batch="N")
    to_uint8_nhwc(original, tmp_path / "dyn.uint8.onnx", SPEC)
    report = verify(original, tmp_path / "dyn.uint8.onnx", SPEC, images)
    assert report.ok and report.max_abs < 1e-5


def test_rewrite_with_fixed_255_scale(tmp_path: Path, images: np.ndarray) -> None:
    spec = replace(SPEC, normalisation=replace(SPEC.normalisation, scale="fixed_255"))
    original = u2net_like(tmp_path / "m.onnx")
    to_uint8_nhwc(original, tmp_path / "m.uint8.onnx", spec)
    assert verify(original, tmp_path / "m.uint8.onnx", spec, images).max_abs < 1e-5


def test_verify_reports_small_differences(
    original: Path, rewritten: Path, images: np.ndarray
) -> None:
    report = verify(original, rewritten, SPEC, images)
    assert report.ok and report.images == 8 and report.batch_sizes == (1, 3, 8)
    assert 0.0 <= report.mean_abs <= report.max_abs < 1e-5


def test_verify_catches_a_different_model(tmp_path: Path, images: np.ndarray) -> None:
    other = u2net_like(tmp_path / "other.onnx", seed=1)
    to_uint8_nhwc(other, tmp_path / "other.uint8.onnx", SPEC)
    report = verify(u2net_like(tmp_path / "m.onnx"), tmp_path / "other.uint8.onnx", SPEC, images)
    assert not report.ok and report.max_abs > 0.05


def test_verification_ok_is_the_tolerance() -> None:
    assert Verification(1e-4, 0.0, 1, (1,), 1e-4).ok
    assert not Verification(1.1e-4, 0.0, 1, (1,), 1e-4).ok


def test_export_writes_the_file_and_its_checksum(tmp_path: Path, images: np.ndarray) -> None:
    original = u2net_like(tmp_path / "tiny.onnx")
    path, report = export_uint8(original, SPEC, images)
    assert path == tmp_path / "tiny.uint8.onnx" and report.ok
    assert resolve(uint8_form(SPEC), tmp_path) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tiny.onnx", "tiny.uint8.onnx", "tiny.uint8.onnx.sha256"
    ]  # fmt: skip


def test_export_over_tolerance_writes_nothing(
    tmp_path: Path, images: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    def far_off(*_args: object, **_kwargs: object) -> Verification:
        return Verification(0.5, 0.1, 8, (1, 3, 8), 1e-4)

    monkeypatch.setattr(onnx_graph, "verify", far_off)
    original = u2net_like(tmp_path / "tiny.onnx")
    with pytest.raises(ModelError, match=r"differs from tiny.onnx by up to 0.5 .*nothing written"):
        export_uint8(original, SPEC, images)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]


def test_export_refuses_a_graph_with_a_baked_in_batch(tmp_path: Path, images: np.ndarray) -> None:
    original = u2net_like(tmp_path / "tiny.onnx", bake_batch_into_reshape=True)
    with pytest.raises(ModelError, match="failed to run on a batch of 3"):
        export_uint8(original, SPEC, images)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]


def test_rewrite_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\xff\xfe not a model" * 7)
    with pytest.raises(ModelError, match="cannot read the ONNX model"):
        to_uint8_nhwc(path, tmp_path / "out.onnx", SPEC)


def test_rewrite_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read the ONNX model"):
        to_uint8_nhwc(tmp_path / "absent.onnx", tmp_path / "out.onnx", SPEC)


def test_rewrite_wrong_input_size(tmp_path: Path) -> None:
    original = u2net_like(tmp_path / "small.onnx", size=(16, 16))
    with pytest.raises(ModelError, match=r"the rewrite needs float32 \[N, 3, 32, 32\]"):
        to_uint8_nhwc(original, tmp_path / "out.onnx", SPEC)
    assert not (tmp_path / "out.onnx").exists()


def test_rewrite_output_index_out_of_range(tmp_path: Path) -> None:
    original = u2net_like(tmp_path / "m.onnx", side_outputs=0)
    with pytest.raises(ModelError, match="has 1 outputs; spec wants #2"):
        to_uint8_nhwc(original, tmp_path / "out.onnx", replace(SPEC, output_index=2))


def test_rewrite_refuses_a_mask_with_two_channels(tmp_path: Path) -> None:
    original = u2net_like(tmp_path / "m.onnx", mask_channels=2)
    with pytest.raises(ModelError, match="must be \\[N, 1, H, W\\] or \\[N, H, W\\]"):
        to_uint8_nhwc(original, tmp_path / "out.onnx", SPEC)


def test_rewrite_of_a_side_output(tmp_path: Path, images: np.ndarray) -> None:
    original = u2net_like(tmp_path / "m.onnx")
    spec = replace(SPEC, output_index=3)
    to_uint8_nhwc(original, tmp_path / "out.onnx", spec)
    expected = OnnxSegmenter(original, spec).predict(images[:2])
    got = OnnxSegmenter(tmp_path / "out.onnx", uint8_form(spec)).predict(images[:2])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_sample_images_are_deterministic_and_varied() -> None:
    first, second = sample_images((32, 40), 6), sample_images((32, 40), 6)
    np.testing.assert_array_equal(first, second)
    assert first.shape == (6, 32, 40, 3) and first.dtype == np.uint8
    assert len({img.tobytes() for img in first}) == 6
    assert first[-1].max() < 64  # the dark one
