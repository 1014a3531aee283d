#!/usr/bin/env bash
# Runs the whole test suite: the C++ format check (tools/check_format.sh), the C++ tests through
# CTest (GoogleTest and the find_package consumer test), then the Python tests in tests/py with the
# venv's pytest, if there are any, then the C++ tests once more under ASan + UBSan
# (tools/sanitize.sh, in build-asan/), the GPU bundle check, the API reference and the wheel.
# Expects tools/setup.sh to have run; brings the build up to date first.
#
#   bash tools/run_tests.sh
#
# Environment: BUILD_DIR (default build); CTEST_PARALLEL_LEVEL is honoured by ctest;
# BLFFT_SKIP_SANITIZE=1 skips the sanitizer step; BLFFT_SKIP_GPU_BUNDLE=1 skips the GPU bundle
# check (tools/gpu_bundle.sh + tools/gpu_check.sh --no-gpu); BLFFT_SKIP_DOCS=1 the API reference;
# BLFFT_SKIP_WHEEL=1 the wheel build and its isolated install test.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
BUILD_DIR="${BUILD_DIR:-build}"

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  echo "run_tests: no build in $BUILD_DIR; run: bash tools/setup.sh" >&2
  exit 1
fi
# Formatting first: it takes seconds (tools/check_format.sh; fix with its --fix).
echo "== C++ formatting (tools/check_format.sh)"
bash tools/check_format.sh

# Re-configure so that test folders added since the last configure are picked up, then build.
cmake -S . -B "$BUILD_DIR" >/dev/null
cmake --build "$BUILD_DIR"

echo "== C++ tests (ctest)"
ctest --test-dir "$BUILD_DIR" --output-on-failure

if compgen -G "tests/py/test_*.py" >/dev/null || compgen -G "tests/py/**/test_*.py" >/dev/null; then
  echo "== Python tests (pytest)"
  .venv/bin/python -m pytest tests/py
else
  echo "== Python tests: none in tests/py yet"
fi

# The optional steps below: `step TITLE SKIP_VARIABLE COMMAND...` runs COMMAND unless the
# environment sets SKIP_VARIABLE=1 (for quick local runs; CI runs them all).
step() {
  local title="$1" skip="$2"
  shift 2
  if [ "${!skip:-0}" = 1 ]; then
    echo "== $title: skipped ($skip=1)"
  else
    echo "== $title"
    "$@"
  fi
}

# The C++ tests again, built with AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/
# (issue #14). About 4.5 min on the 2-core CI machine from an empty build folder (build ~2.5 min,
# tests ~2 min), less when only a few sources changed.
step "C++ tests under ASan + UBSan (tools/sanitize.sh)" BLFFT_SKIP_SANITIZE bash tools/sanitize.sh

# GPU check, the parts that need no GPU (issue #10): build gpu_bundle/ (tools/gpu_bundle.sh:
# sm_80/sm_90 C++ CUDA tests and benchmark, CPython 3.12 modules; about 3.5 minutes cold on 2 cores,
# incremental in build-bundle/) and check it (tools/gpu_check.sh --no-gpu: the bundle's libraries
# resolve, its modules import, the emulation and cuFFT/cuBLAS stand-in tests pass; the GPU steps
# are reported as skipped).
gpu_bundle_check() {
  if ! command -v nvcc >/dev/null 2>&1 && [ ! -x /usr/local/cuda/bin/nvcc ]; then
    echo "(no nvcc on this machine: nothing to build)"
    return
  fi
  bash tools/gpu_bundle.sh
  bash tools/gpu_check.sh --no-gpu --out "$BUILD_DIR/gpu_check_no_gpu"
}
step "GPU bundle check (tools/gpu_bundle.sh, tools/gpu_check.sh --no-gpu)" BLFFT_SKIP_GPU_BUNDLE \
  gpu_bundle_check

# API reference (issue #13): doxygen on include/blfft + Sphinx autodoc, warnings as errors
# (tools/build_docs.sh; about 15 s).
step "API reference (tools/build_docs.sh)" BLFFT_SKIP_DOCS bash tools/build_docs.sh

# Self-contained wheel (issue #13): tools/build_wheel.sh (isolated build, with blfft._cuda where
# nvcc is, auditwheel repair grafting FFTW/BLIS/libgomp; about 2.5 min cold on 2 cores with
# CUDA) into dist/, then tools/test_wheel.sh (fresh venv, torch, the wheel, Debian's FFTW/BLIS
# hidden in a private mount namespace; forward/backward against torch; blfft._cuda with and
# without the nvidia-cufft wheel; about 2.5 min).
wheel_check() {
  PYTHON="$ROOT/.venv/bin/python3" bash tools/build_wheel.sh
  PYTHON="$ROOT/.venv/bin/python3" bash tools/test_wheel.sh
}
step "wheel build and isolated install test (tools/build_wheel.sh, tools/test_wheel.sh)" \
  BLFFT_SKIP_WHEEL wheel_check
