#!/usr/bin/env bash
# Build the quality gate's set: procedural sources, then a seeded composite set of 4 classes x 6
# images at 256 px (tests/quality/test_gate.py and `make quality-baseline` build the same one).
#   scripts/quality-gate-set.sh WORKDIR      → WORKDIR/ci-gate (the set) and WORKDIR/sources
# CLIPLINE: the clipline command to use (default: this checkout's .venv/bin/clipline).
set -euo pipefail
work=${1:?usage: scripts/quality-gate-set.sh WORKDIR}
clipline=${CLIPLINE:-$(dirname "$0")/../.venv/bin/clipline}
rm -rf "$work/sources"
"$clipline" datasets synth-sources "$work/sources" --seed 0 >/dev/null
"$clipline" datasets compose "$work/ci-gate" --seed 0 --per-class 6 --size 256 --split eval \
  --objects photo="$work/sources/objects/photo" --objects clipart="$work/sources/objects/clipart" \
  --backgrounds photo="$work/sources/backgrounds/photo" --force
