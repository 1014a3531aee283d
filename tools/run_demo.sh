#!/usr/bin/env bash
# The main job: `python -m blfft demo`. Trains the paper's FCN on a real UCR time-series data set
# (GunPoint) at compression rates 0, 0.5 and 0.75, prints test accuracy, time per epoch and the
# bytes held for backward next to torch's own convolutions, and writes a plot (about two minutes
# on a 2-core CPU). Expects tools/setup.sh to have run.
#
#   bash tools/run_demo.sh [demo options: --dataset NAME --epochs N --out DIR --quick ...]
#
# The C++ example that this script ran before (one ResNet layer, timings) is still built:
#   build/examples/blfft_example_resnet_layer
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if ! .venv/bin/python -c 'import blfft' >/dev/null 2>&1; then
  echo "run_demo: the blfft Python package is not installed in .venv; run: bash tools/setup.sh" >&2
  exit 1
fi
# A passive OpenMP wait policy: on a busy machine (more runnable threads than cores) busy-waiting
# OpenMP threads make blfft's many short parallel regions up to tens of times slower.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
exec .venv/bin/python -m blfft demo "$@"
