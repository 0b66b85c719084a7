"""One contract for every real segmenter: ONNX Runtime in process, and Triton over gRPC and HTTP.

All of them run the same uint8 graph of the real u2netp. Triton's server here has a
max_batch_size of 2, so a batch of 3 must be split by the client; its masks must equal the
in-process ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from pipeline.adapters.segmenters.onnx_graph import sample_images
from pipeline.adapters.segmenters.onnx_runtime import OnnxSegmenter
from pipeline.adapters.segmenters.triton_client import TritonSegmenter
from pipeline.models import U2NETP, uint8_form
from pipeline.ports import Segmenter
from tests.tritonkit import TritonServer

pytestmark = pytest.mark.slow

SIZE = U2NETP.input_size
MAX_BATCH = 2
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def small_batch_triton(
    u2netp_uint8: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    with TritonServer(
        u2netp_uint8, max_batch_size=MAX_BATCH, log_dir=tmp_path_factory.mktemp("triton")
    ) as server:
        yield server


@pytest.fixture(scope="module")
def images() -> npt.NDArray[np.uint8]:
    return sample_images(SIZE, MAX_BATCH + 1)


@pytest.fixture(scope="module")
def in_process(u2netp_uint8: Path) -> OnnxSegmenter:
    return OnnxSegmenter(u2netp_uint8, uint8_form(U2NETP))


@pytest.fixture(scope="module")
def reference(in_process: OnnxSegmenter, images: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    return in_process.predict(images)


@pytest.fixture(params=["onnx", "triton-grpc", "triton-http"])
def segmenter(request: pytest.FixtureRequest) -> Iterator[Segmenter]:
    if request.param == "onnx":
        yield request.getfixturevalue("in_process")
        return
    server: TritonServer = request.getfixturevalue("small_batch_triton")
    protocol = request.param.removeprefix("triton-")
    url = server.url if protocol == "grpc" else server.http_url
    triton = TritonSegmenter(url, "u2netp", protocol=protocol, expected_size=SIZE)
    yield triton
    triton.close()


def test_is_a_segmenter_of_the_model_size(segmenter: Segmenter) -> None:
    assert isinstance(segmenter, Segmenter)
    assert segmenter.input_size == SIZE


def test_batch_of_one(
    segmenter: Segmenter, images: npt.NDArray[np.uint8], reference: npt.NDArray[np.float32]
) -> None:
    masks = segmenter.predict(images[:1])
    assert masks.shape == (1, *SIZE)
    assert masks.dtype == np.float32
    assert masks.flags.c_contiguous and masks.flags.writeable
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    np.testing.assert_allclose(masks, reference[:1], atol=TOLERANCE, rtol=0)


def test_batch_larger_than_the_servers_max_batch(
    segmenter: Segmenter, images: npt.NDArray[np.uint8], reference: npt.NDArray[np.float32]
) -> None:
    masks = segmenter.predict(images)
    assert masks.shape == (MAX_BATCH + 1, *SIZE)
    assert masks.dtype == np.float32
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    # Same graph, same pixels: Triton's masks are the in-process ones, image by image.
    np.testing.assert_allclose(masks, reference, atol=TOLERANCE, rtol=0)


def test_empty_batch(segmenter: Segmenter) -> None:
    assert segmenter.predict(np.zeros((0, *SIZE, 3), np.uint8)).shape == (0, *SIZE)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((1, *SIZE, 3), np.float32), np.zeros((1, 32, 32, 3), np.uint8),
     np.zeros((*SIZE, 3), np.uint8)],
    ids=["float32", "wrong-size", "no-batch-axis"],
)
def test_wrong_input_is_the_callers_bug(segmenter: Segmenter, bad: npt.NDArray[np.uint8]) -> None:
    with pytest.raises(ValueError, match="expected"):
        segmenter.predict(bad)


def test_triton_reports_the_servers_max_batch(small_batch_triton: TritonServer) -> None:
    triton = TritonSegmenter(small_batch_triton.url, "u2netp")
    assert triton.max_batch == MAX_BATCH
    triton.close()
