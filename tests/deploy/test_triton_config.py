"""The Triton model configuration parses as Triton's own protobuf, and matches the graph."""

from __future__ import annotations

import subprocess
from pathlib import Path

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "triton" / "model_repository" / "u2netp" / "config.pbtxt"
SCRIPT = ROOT / "deploy" / "triton" / "build_engine.sh"


def load() -> model_config_pb2.ModelConfig:
    return text_format.Parse(CONFIG.read_text(), model_config_pb2.ModelConfig())


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
