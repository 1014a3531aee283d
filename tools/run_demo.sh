#!/usr/bin/env bash
# The main job: a ResNet-style layer (batch 32, 64 -> 64 channels, 32x32, 3x3) run forward and
# backward at compression rates 0, 0.25, 0.5 and 0.75, with timings.
# Expects tools/setup.sh to have run.
#
#   bash tools/run_demo.sh [repetitions]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-build}"

# HOOK: once the Python package has its demo, run it instead:
#   exec .venv/bin/python -m blfft demo "$@"

exe="$BUILD_DIR/examples/blfft_example_resnet_layer"
if [ ! -x "$exe" ]; then
  echo "run_demo: $exe not built; run: bash tools/setup.sh" >&2
  exit 1
fi
exec "$exe" "$@"
