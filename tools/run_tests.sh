#!/usr/bin/env bash
# Runs the whole test suite: the C++ tests through CTest (GoogleTest and the find_package consumer
# test), then the Python tests in tests/py with the venv's pytest, if there are any.
# Expects tools/setup.sh to have run; brings the build up to date first.
#
#   bash tools/run_tests.sh
#
# Environment: BUILD_DIR (default build); CTEST_PARALLEL_LEVEL is honoured by ctest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD_DIR="${BUILD_DIR:-build}"

if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  echo "run_tests: no build in $BUILD_DIR; run: bash tools/setup.sh" >&2
  exit 1
fi
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
