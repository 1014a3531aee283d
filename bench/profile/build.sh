#!/usr/bin/env bash
# Builds the stage profiler against a CMake build of libblfft (default build-floors: any build
# dir configured as tools/setup.sh does, BLIS serial) and links BLIS itself for the rate probes.
#   bash bench/profile/build.sh [BUILD_DIR]   ->  BUILD_DIR/stage_profile
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BUILD="$(cd "${1:-build-floors}" && pwd)"
BLIS_DIR=/usr/lib/x86_64-linux-gnu/blis-serial
g++ -O2 -std=c++17 -fopenmp -Wall -Wextra -Iinclude -Isrc -Isrc/common \
  bench/profile/stage_profile.cpp -o "$BUILD/stage_profile" \
  -L"$BUILD" -lblfft -Wl,-rpath,"$BUILD" -lfftw3f -L"$BLIS_DIR" -lblis -Wl,-rpath,"$BLIS_DIR"
echo "$BUILD/stage_profile"
