"""The Triton model configurations parse as Triton's own protobuf, and match the graph.

Three variants serve the same uint8 graphs under the same names: the TensorRT plan
(deploy/triton/model_repository, GPU), ONNX Runtime (docker/triton/model_repository, CPU) and
OpenVINO (deploy/triton/openvino, Intel CPU nodes without native bf16).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ROOT = Path(__file__).resolve().parents[2]
TENSORRT = ROOT / "deploy" / "triton" / "model_repository"
ONNXRUNTIME = ROOT / "docker" / "triton" / "model_repository"
OPENVINO = ROOT / "deploy" / "triton" / "openvino"
VARIANTS = {"tensorrt": TENSORRT, "onnxruntime": ONNXRUNTIME, "openvino": OPENVINO}
MODELS = ("u2net", "u2netp")
CONFIG = TENSORRT / "u2netp" / "config.pbtxt"
SCRIPT = ROOT / "deploy" / "triton" / "build_engine.sh"
DOCKERFILE = ROOT / "docker" / "triton" / "Dockerfile"

# The `parameters` Triton's OpenVINO backend reads (openvino_backend src/openvino.cc,
# ParseParameters): any other key is ignored without an error, INFERENCE_PRECISION_HINT included.
OPENVINO_PARAMETERS = {
    "INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS", "HINT_BF16", "NUM_STREAMS",
    "PERFORMANCE_HINT", "CPU_EXTENSION_PATH", "SKIP_OV_DYNAMIC_BATCHSIZE", "ENABLE_BATCH_PADDING",
    "RESHAPE_IO_LAYERS",
}

CPU = model_config_pb2.ModelInstanceGroup.KIND_CPU


def load(path: Path = CONFIG) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def parameters(config: model_config_pb2.ModelConfig) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


def test_the_config_is_a_valid_tensorrt_model_config() -> None:
    config = load()
    assert (config.name, config.platform) == ("u2netp", "tensorrt_plan")
    assert config.max_batch_size >= max(config.dynamic_batching.preferred_batch_size)
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert config.model_warmup[0].batch_size <= config.max_batch_size


def test_the_config_names_the_uint8_graphs_tensors(u2netp_uint8: Path) -> None:
    graph = onnx.load(str(u2netp_uint8), load_external_data=False).graph
    config = load()
    [image], [mask] = config.input, config.output
    assert image.name == graph.input[0].name and mask.name == "mask"
    assert image.data_type == model_config_pb2.TYPE_UINT8
    assert mask.data_type == model_config_pb2.TYPE_FP32
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]]
    assert list(image.dims) == dims == [320, 320, 3]
    assert list(mask.dims) == [320, 320]
    assert set(config.model_warmup[0].inputs) == {image.name}


def test_the_engine_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0


# -- every variant ------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_serves_each_model_under_its_name(variant: str) -> None:
    folder = VARIANTS[variant]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(MODELS)
    for name in MODELS:
        assert load(folder / name / "config.pbtxt").name == name


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_names_the_uint8_graphs_tensors(variant: str, u2netp_uint8: Path) -> None:
    graph = onnx.load(str(u2netp_uint8), load_external_data=False).graph
    [graph_image], graph_outputs = graph.input, {o.name for o in graph.output}
    graph_dims = [d.dim_value for d in graph_image.type.tensor_type.shape.dim[1:]]
    u2netp = load(VARIANTS[variant] / "u2netp" / "config.pbtxt")
    [image], [mask] = u2netp.input, u2netp.output
    assert image.name == graph_image.name and mask.name in graph_outputs
    assert graph_image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert image.data_type == model_config_pb2.TYPE_UINT8
    assert mask.data_type == model_config_pb2.TYPE_FP32
    assert list(image.dims) == graph_dims == [320, 320, 3]
    assert list(mask.dims) == [320, 320]
    # u2net is exported by the same code: the same tensors, the same serving settings.
    u2net = load(VARIANTS[variant] / "u2net" / "config.pbtxt")
    u2net.name = u2netp.name
    assert u2net == u2netp


# -- the OpenVINO variant -----------------------------------------------------------------------


@pytest.mark.parametrize("name", MODELS)
def test_the_openvino_variant_reads_the_onnx_graph_on_cpu(name: str) -> None:
    config = load(OPENVINO / name / "config.pbtxt")
    assert (config.backend, config.platform) == ("openvino", "")
    assert config.default_model_filename == "model.onnx"  # the backend's default is model.xml
    assert [group.kind for group in config.instance_group] == [CPU]


@pytest.mark.parametrize("name", MODELS)
def test_the_openvino_variant_asks_for_nothing_but_f32(name: str) -> None:
    params = parameters(load(OPENVINO / name / "config.pbtxt"))
    # A key the backend does not read would be ignored without a word: none may pretend to work.
    assert set(params) <= OPENVINO_PARAMETERS
    # HINT_BF16 can only turn bf16 on, and bf16 cost a u2netp mask IoU 0.875 (docs/PERFORMANCE.md).
    assert "HINT_BF16" not in params
    assert "INFERENCE_PRECISION_HINT" not in params


@pytest.mark.parametrize("name", MODELS)
def test_the_openvino_variant_runs_one_image_per_execution(name: str) -> None:
    config = load(OPENVINO / name / "config.pbtxt")
    params = parameters(config)
    # The backend fixes the batch at max_batch_size and refuses smaller executions, or pads
    # them with ENABLE_BATCH_PADDING (computing the padding): batch 1, no batcher, no padding.
    assert config.max_batch_size == 1
    assert not config.HasField("dynamic_batching")
    assert params.get("ENABLE_BATCH_PADDING", "no").lower() != "yes"
    # One stream per instance: each instance holds one infer request.
    assert int(params["NUM_STREAMS"]) == sum(g.count for g in config.instance_group)
    assert params["PERFORMANCE_HINT"] in {"LATENCY", "THROUGHPUT"}


def _stage(target: str) -> str:
    text = DOCKERFILE.read_text()
    match = re.search(rf"^FROM base AS {target}\n(.*?)(?=^FROM |\Z)", text, re.M | re.S)
    assert match, f"no `{target}` target in {DOCKERFILE.relative_to(ROOT)}"
    return match.group(1)


@pytest.mark.parametrize(("target", "variant"), [("cpu", "onnxruntime"), ("openvino", "openvino")])
def test_each_cpu_target_copies_its_configs_beside_the_exported_graphs(
    target: str, variant: str
) -> None:
    copies = re.findall(r"^COPY (?:--from=(\S+) )?(\S+) (\S+)$", _stage(target), re.M)
    for name in MODELS:
        config = VARIANTS[variant] / name / "config.pbtxt"
        graph_file = load(config).default_model_filename or "model.onnx"
        assert ("", str(config.relative_to(ROOT)), f"/models/{name}/config.pbtxt") in copies
        assert ("export", f"/export/{name}.uint8.onnx", f"/models/{name}/1/{graph_file}") in copies
    assert len(copies) == 2 * len(MODELS)
