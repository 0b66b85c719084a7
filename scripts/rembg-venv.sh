#!/usr/bin/env bash
# Make bench/.venv-rembg: rembg's own CLI, for bench/vs_rembg.py and bench/fidelity.py to race and
# compare against. Kept apart from .venv on purpose: rembg pins its own onnxruntime, numpy and
# pillow ranges, and the product must never import it. Idempotent: a venv whose `rembg` runs at
# the pinned version is left alone.
#
#   scripts/rembg-venv.sh            # python from $PYTHON, else python3.11, else python3
set -euo pipefail

REMBG_VERSION=2.0.86
# [cpu] brings onnxruntime, [cli] brings click, filetype, watchdog, tqdm and the server's packages
# that `rembg` imports at start-up even for `rembg p`.
SPEC="rembg[cpu,cli]==${REMBG_VERSION}"

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/bench/.venv-rembg"

if [[ -x "$venv/bin/rembg" ]] \
  && "$venv/bin/python" -c "import importlib.metadata as m, sys; \
sys.exit(m.version('rembg') != '${REMBG_VERSION}')" 2>/dev/null \
  && "$venv/bin/rembg" p --help >/dev/null 2>&1; then
  echo "rembg-venv: $venv already has rembg ${REMBG_VERSION}"
  exit 0
fi

python="${PYTHON:-$(command -v python3.11 || command -v python3)}"
echo "rembg-venv: creating $venv with $("$python" -V 2>&1) and ${SPEC}"
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet "$SPEC"
# Fail here rather than in the middle of a benchmark if the CLI cannot start.
"$venv/bin/rembg" p --help >/dev/null
echo "rembg-venv: ready: $venv/bin/rembg ($("$venv/bin/python" -c \
  "import importlib.metadata as m; print('rembg', m.version('rembg'), \
'onnxruntime', m.version('onnxruntime'))"))"
