#!/usr/bin/env bash
# Build u2netp's TensorRT plan for Triton: the uint8, dynamic-batch ONNX graph in, an FP16 plan
# out, in the model repository layout Triton reads. Needs an NVIDIA GPU: the plan is specific to
# the GPU architecture and TensorRT version it is built with, so build it inside the same
# `tritonserver` image that serves it, on the same kind of GPU.
#
#   deploy/triton/build_engine.sh MODEL.uint8.onnx [REPOSITORY]
#
# MODEL.uint8.onnx comes from `clipline models export-uint8 u2netp` (input `image`, uint8 NHWC
# [N,320,320,3]; output `mask`, float32 [N,320,320]). REPOSITORY defaults to
# deploy/triton/model_repository; the plan lands in REPOSITORY/u2netp/1/model.plan next to the
# config.pbtxt that describes it.
#
# Environment: TRITON_IMAGE (default below), MAX_BATCH (16), OPT_BATCH (8), WORKSPACE_MB (4096).
# With no docker on the machine but trtexec on PATH (inside the container), it runs trtexec
# directly.
set -euo pipefail

onnx=${1:?usage: build_engine.sh MODEL.uint8.onnx [REPOSITORY]}
repo=${2:-$(cd "$(dirname "$0")" && pwd)/model_repository}
# The same release as docker/triton/Dockerfile: a plan only loads in the TensorRT it was built by.
image=${TRITON_IMAGE:-nvcr.io/nvidia/tritonserver:25.01-py3}
max_batch=${MAX_BATCH:-16}
opt_batch=${OPT_BATCH:-8}
workspace=${WORKSPACE_MB:-4096}

input=$(python3 - "$onnx" <<'PY'
import sys, onnx
print(onnx.load(sys.argv[1], load_external_data=False).graph.input[0].name)
PY
)
mkdir -p "$repo/u2netp/1"
trt_args() {  # trt_args ONNX_PATH PLAN_PATH
  echo --onnx="$1" --saveEngine="$2" --fp16 \
    --minShapes="${input}:1x320x320x3" \
    --optShapes="${input}:${opt_batch}x320x320x3" \
    --maxShapes="${input}:${max_batch}x320x320x3" \
    --memPoolSize="workspace:${workspace}M" --skipInference
}

if command -v trtexec >/dev/null; then
  # shellcheck disable=SC2046 # the arguments hold no spaces
  trtexec $(trt_args "$onnx" "$repo/u2netp/1/model.plan")
else
  # shellcheck disable=SC2046
  docker run --rm --gpus all \
    -v "$(realpath "$onnx")":/work/model.onnx:ro -v "$(realpath "$repo")":/repo \
    "$image" /usr/src/tensorrt/bin/trtexec $(trt_args /work/model.onnx /repo/u2netp/1/model.plan)
fi
echo "build_engine: wrote $repo/u2netp/1/model.plan (FP16, batch 1..${max_batch}, input ${input})"
