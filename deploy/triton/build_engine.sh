#!/usr/bin/env bash
# Build TensorRT plans for Triton: each uint8, dynamic-batch ONNX graph in, an FP16 plan out, in
# the model repository layout Triton reads. Needs an NVIDIA GPU: a plan is specific to the GPU
# architecture and TensorRT version it is built with, so build it inside the same `tritonserver`
# image that serves it, on the same kind of GPU.
#
#   deploy/triton/build_engine.sh NAME.uint8.onnx [NAME.uint8.onnx ...] [REPOSITORY]
#   deploy/triton/build_engine.sh u2net.uint8.onnx u2netp.uint8.onnx    # every served model
#
# NAME.uint8.onnx comes from `clipline models export-uint8 NAME` (input `image`, uint8 NHWC
# [N,320,320,3]; output `mask`, float32 [N,320,320]); NAME (the file name up to `.uint8.onnx`)
# is the model's name on Triton, which is the name the workers ask for. REPOSITORY (an argument
# that does not end in .onnx) defaults to deploy/triton/model_repository; each plan lands in
# REPOSITORY/NAME/1/model.plan next to the config.pbtxt that describes it (u2net and u2netp have
# one each).
#
# Environment: TRITON_IMAGE (default below), MAX_BATCH (16), OPT_BATCH (8), WORKSPACE_MB (4096).
# With no docker on the machine but trtexec on PATH (inside the container), it runs trtexec
# directly.
set -euo pipefail

usage="usage: build_engine.sh NAME.uint8.onnx [NAME.uint8.onnx ...] [REPOSITORY]"
graphs=()
repo=$(cd "$(dirname "$0")" && pwd)/model_repository
for arg in "$@"; do
  case $arg in
    *.onnx) graphs+=("$arg") ;;
    *) repo=$arg ;;
  esac
done
[ ${#graphs[@]} -gt 0 ] || { echo "$usage" >&2; exit 2; }
# The same release as docker/triton/Dockerfile: a plan only loads in the TensorRT it was built by.
image=${TRITON_IMAGE:-nvcr.io/nvidia/tritonserver:25.01-py3}
max_batch=${MAX_BATCH:-16}
opt_batch=${OPT_BATCH:-8}
workspace=${WORKSPACE_MB:-4096}

trt_args() {  # trt_args INPUT_NAME ONNX_PATH PLAN_PATH
  echo --onnx="$2" --saveEngine="$3" --fp16 \
    --minShapes="${1}:1x320x320x3" \
    --optShapes="${1}:${opt_batch}x320x320x3" \
    --maxShapes="${1}:${max_batch}x320x320x3" \
    --memPoolSize="workspace:${workspace}M" --skipInference
}

build() {  # build ONNX_PATH
  local onnx=$1 name input
  name=$(basename "$onnx" .onnx)
  name=${name%.uint8}
  if [ ! -f "$repo/$name/config.pbtxt" ]; then
    echo "build_engine: no $repo/$name/config.pbtxt: Triton would not know model $name" >&2
    exit 2
  fi
  input=$(python3 - "$onnx" <<'PY'
import sys, onnx
print(onnx.load(sys.argv[1], load_external_data=False).graph.input[0].name)
PY
)
  mkdir -p "$repo/$name/1"
  if command -v trtexec >/dev/null; then
    # shellcheck disable=SC2046 # the arguments hold no spaces
    trtexec $(trt_args "$input" "$onnx" "$repo/$name/1/model.plan")
  else
    # shellcheck disable=SC2046
    docker run --rm --gpus all \
      -v "$(realpath "$onnx")":/work/model.onnx:ro -v "$(realpath "$repo")":/repo \
      "$image" /usr/src/tensorrt/bin/trtexec \
      $(trt_args "$input" /work/model.onnx "/repo/$name/1/model.plan")
  fi
  echo "build_engine: wrote $repo/$name/1/model.plan (FP16, batch 1..${max_batch}, input ${input})"
}

for onnx in "${graphs[@]}"; do
  build "$onnx"
done
