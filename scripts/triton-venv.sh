#!/usr/bin/env bash
# Make .venv-triton: a real Triton server (the tritonserver binary inside the nvidia-pytriton
# wheel) with ONNX Runtime, for `clipline triton serve` and the tests that need Triton. Kept apart
# from .venv on purpose: pytriton needs numpy<2, Clipline runs on numpy 2, and the product only
# ever talks to Triton over the network. Idempotent: a venv that imports the pinned versions is
# left alone.
#
#   scripts/triton-venv.sh            # python from $PYTHON, else python3.11, else python3
set -euo pipefail

PYTRITON_VERSION=0.7.0
NUMPY_VERSION=1.26.4
ORT_VERSION=1.31.1
PINS=("nvidia-pytriton==${PYTRITON_VERSION}" "numpy==${NUMPY_VERSION}" "onnxruntime==${ORT_VERSION}")

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-triton"

check='import importlib.metadata as m, sys
want = {"nvidia-pytriton": "'"$PYTRITON_VERSION"'", "numpy": "'"$NUMPY_VERSION"'",
        "onnxruntime": "'"$ORT_VERSION"'"}
sys.exit(any(m.version(name) != version for name, version in want.items()))'

if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "$check" 2>/dev/null \
  && "$venv/bin/python" -c "import pytriton.triton, onnxruntime" 2>/dev/null; then
  echo "triton-venv: $venv already has ${PINS[*]}"
  exit 0
fi

python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
echo "triton-venv: creating $venv with $("$python" -V 2>&1) and ${PINS[*]}"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "${PINS[@]}"
# Fail here rather than in the middle of a test session if the server cannot even start.
"$venv/bin/python" -c "import pytriton.triton, onnxruntime"
"$venv/bin/python" "$root/pipeline/adapters/segmenters/triton_dev_server.py" --help >/dev/null
"$venv/bin/python" -c "$check"
echo "triton-venv: ready: $venv (${PINS[*]})"
